"""Gradient accumulation and bfloat16 in `train.train_step` (one CPU device).

Accumulation: k micro-batches must give the update of the whole batch (the loss sums, token
counts and gradients are summed, then divided once). bfloat16: every matmul of the training
step runs in bfloat16 while parameters, Adam moments, softmax and loss stay float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multidevice_helper import batches, step_config
from conftest import tiny_config
from transformer_jax import config as config_lib
from transformer_jax import optim, sharding
from transformer_jax import train as train_lib
from transformer_jax.model import Transformer


@functools.lru_cache(maxsize=None)
def _initial_state():
  """The initial TrainState, shared by every run here: the parameters depend only on the
  rng, not on p_drop, dtype or k. An 'rbg' key: its init compiles 3x faster than threefry's."""
  config = step_config("rbg")
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  return jax.jit(lambda: train_lib.create_state(model, tx, jax.random.key(0, impl="rbg"),
                                                batches()[0]))()


@functools.lru_cache(maxsize=None)
def _run(overrides: tuple[tuple[str, object], ...], steps: int = 3):
  """(per-token losses, final state) of `steps` train steps on the helper's fixed batches."""
  config = _config(**dict(overrides))
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  step = jax.jit(functools.partial(train_lib.train_step, model=model, tx=tx, eps_ls=0.1,
                                   grad_accum_steps=config.train.grad_accum_steps))
  state, rng, losses = _initial_state(), jax.random.key(1, impl="rbg"), []
  for batch in batches()[:steps]:
    state, metrics = step(state, batch, rng)
    losses.append(float(metrics["loss"]) / float(metrics["tokens"]))
  return np.asarray(losses), state


def _moved(state) -> float:
  """Largest change of any parameter since the initial state."""
  return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
      jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(_initial_state().params)))


# p_drop 0: with dropout on, k micro-batches draw other masks than one batch would. (That
# dropout with k = 2 is deterministic is checked by test_multihost, which compares two runs.)
ONE = (("model.p_drop", 0.0),)
FOUR = ONE + (("train.grad_accum_steps", 4),)


def _config(**over):
  c = step_config("rbg")
  for key, value in over.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


def test_accumulated_micro_batches_give_the_whole_batch_update():
  one, state_1 = _run(ONE)
  four, state_4 = _run(FOUR)
  np.testing.assert_allclose(four, one, rtol=1e-6)
  assert _moved(state_1) > 1e-2  # the steps changed the parameters: the comparison has teeth
  for a, b in zip(jax.tree_util.tree_leaves(state_4.params),
                  jax.tree_util.tree_leaves(state_1.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5)


def test_rows_must_divide_into_micro_batches():
  config = _config(**{"train.grad_accum_steps": 3})
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  batch = batches()[0]  # 8 rows
  state = jax.eval_shape(lambda: train_lib.create_state(model, tx, jax.random.PRNGKey(0), batch))
  with pytest.raises(ValueError, match=r"config.train.grad_accum_steps=3 must divide the batch "
                     r"rows, got 8"):
    jax.eval_shape(functools.partial(train_lib.train_step, model=model, tx=tx, eps_ls=0.1,
                                     grad_accum_steps=3), state, batch, jax.random.key(0))
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  config.data.batch_multiple = 2
  assert sharding.rows_multiple(config, mesh, sharding.rules(config)) == 6


def test_train_refuses_zero_micro_batches(tiny_data, tmp_path):
  config = tiny_config(tiny_data, **{"train.grad_accum_steps": 0})
  with pytest.raises(config_lib.ConfigError, match=r"config.train.grad_accum_steps must be"):
    train_lib.train(config, tmp_path / "run", log=lambda *_: None)
  assert not (tmp_path / "run" / "config.json").exists()


def _equations(jaxpr) -> list:
  """Every equation of a jaxpr, including those inside scans, custom rules and calls."""
  out = []
  for eqn in jaxpr.eqns:
    out.append(eqn)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(inner, "eqns"):
          out.extend(_equations(inner))
  return out


def test_bfloat16_matmuls_with_float32_params_softmax_and_loss():
  config = _config(**{"model.dtype": "bfloat16"})
  model = Transformer(config_lib.model_config(config))
  tx, _ = optim.make_optimizer(config)
  step = functools.partial(train_lib.train_step, model=model, tx=tx, eps_ls=0.1)
  eqns = _equations(jax.make_jaxpr(step)(_initial_state(), batches()[0],
                                         jax.random.key(1, impl="rbg")).jaxpr)
  dots = [e for e in eqns if e.primitive.name == "dot_general"]
  # N = 1: encoder 6 matmuls (QKV, QK^T, AV, W_O, W_1, W_2), decoder 11 (cross-attention adds
  # Q, KV, QK^T, AV, W_O), logits 1; each forward and twice backward.
  assert len(dots) >= 3 * 18
  assert all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
  # exp and log appear only in softmax, logsumexp and the loss: all float32.
  transcendental = [e for e in eqns if e.primitive.name in ("exp", "log")]
  assert transcendental and all(e.outvars[0].aval.dtype == jnp.float32 for e in transcendental)

  bf16, state = _run(FOUR + (("model.dtype", "bfloat16"),))
  fp32, _ = _run(FOUR)
  for tree in (state.params, state.opt_state):
    assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree_util.tree_leaves(tree))
  assert np.isfinite(bf16).all() and _moved(state) > 1e-2
  assert bf16[0] == pytest.approx(fp32[0], rel=1e-2)
