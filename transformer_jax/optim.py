"""Optimizer and learning-rate schedule (paper Section 5.3)."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax


def paper_schedule(d_model: int, warmup_steps: int, scale: float = 1.0) -> optax.Schedule:
  """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)  (Eq. 3).

  `step` is the paper's 1-based step number; optax counts updates from 0, so step = count + 1.
  The rate rises linearly for `warmup_steps` steps, then decays as 1/sqrt(step).

  Raises:
    ValueError: warmup_steps < 1 (names config.train.warmup_steps).
  """
  if warmup_steps < 1:
    raise ValueError(f"config.train.warmup_steps must be >= 1, got {warmup_steps}")

  def schedule(count):
    step = jnp.asarray(count, jnp.float32) + 1.0
    return scale * d_model ** -0.5 * jnp.minimum(step ** -0.5, step * warmup_steps ** -1.5)

  return schedule


def make_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation,
                                                               optax.Schedule]:
  """Adam(beta1, beta2, eps) with the paper's schedule, from `config.train` and `config.model`."""
  t = config.train
  schedule = paper_schedule(config.model.d_model, t.warmup_steps, t.lr_scale)
  tx = optax.adam(learning_rate=schedule, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps)
  return tx, schedule
