"""Label-smoothed cross entropy with integer labels (paper Section 5.4).

Losses are returned as (sum, denominator) pairs so that callers can add them across batches and
devices before dividing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAD_ID = 0


def label_smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, eps_ls: float
                                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Cross entropy against a label-smoothed target, without building one-hot targets.

  The target puts 1 - eps_ls on the label and eps_ls / (C - 1) on each other class. The
  constant entropy of that target is subtracted, so a perfect prediction has loss 0 (as in
  tensor2tensor). Positions whose label is PAD (0) are ignored.

  Args:
    logits: float [B, T, C].
    labels: int [B, T], PAD where there is no target.
    eps_ls: label smoothing epsilon in [0, 1).

  Returns:
    (loss_sum, nll_sum, num_tokens), float32 scalars summed over non-PAD positions. nll_sum is
    the unsmoothed negative log-likelihood in nats, for per-wordpiece perplexity.
  """
  num_classes = logits.shape[-1]
  z = logits.astype(jnp.float32)  # [B, T, C]
  # Written with logsumexp and masked sums instead of log_softmax + gather, so neither the
  # forward nor the backward pass materialises a [B, T, C] array besides the gradient itself.
  lse = jax.nn.logsumexp(z, axis=-1)  # [B, T]
  classes = jnp.arange(num_classes, dtype=labels.dtype)
  z_label = jnp.sum(jnp.where(labels[..., None] == classes, z, 0.0), axis=-1)  # [B, T]
  nll = lse - z_label  # -log p(label)
  loss = nll
  if eps_ls > 0.0:
    confidence = 1.0 - eps_ls
    low = eps_ls / (num_classes - 1)
    sum_neg_log_p = num_classes * lse - jnp.sum(z, axis=-1)  # sum_j -log p(j), [B, T]
    loss = confidence * nll + low * (sum_neg_log_p - nll)
    entropy = -(confidence * jnp.log(confidence) + (num_classes - 1) * low * jnp.log(low))
    loss = loss - entropy
  weights = (labels != PAD_ID).astype(jnp.float32)
  return jnp.sum(loss * weights), jnp.sum(nll * weights), jnp.sum(weights)
