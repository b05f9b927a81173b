"""Scaled dot-product and multi-head attention (paper Section 3.2, Eq. 1 and 2).

Shape key:
  B batch, T query positions, S key positions, D d_model, H heads (h), K d_k, V d_v.

Per-head kernels are 3-D so the einsums read like the paper: W_Q, W_K are [D, H, K], W_V is
[D, H, V], W_O is [H, V, D]. Parameters carry logical axis names only ('embed', 'heads', 'd_k',
'd_v'); which mesh axis each maps to is decided elsewhere.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from transformer_jax import dropout as dropout_lib
from transformer_jax.linear import linear

# Large but finite, so a row whose keys are all masked (an all-PAD batch row) gives a uniform
# distribution rather than NaN.
_MASKED = -1e9

# Glorot-uniform over fan-in D and fan-out H*K, as for a [D, H*K] matrix.
_qkv_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0,
                                             out_axis=(1, 2))
_out_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1),
                                             out_axis=2)


def scaled_dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                                 dropout_rate: float = 0.0,
                                 dropout_rng: Optional[jax.Array] = None,
                                 dropout_algorithm: str = dropout_lib.DEFAULT_ALGORITHM
                                 ) -> jax.Array:
  """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, per head (Eq. 1).

  Args:
    q: [B, T, H, K] queries.
    k: [B, S, H, K] keys.
    v: [B, S, H, V] values.
    mask: bool, broadcastable to [B, H, T, S]; True where a query may attend to a key.
    dropout_rate: dropout on the attention weights (not in the paper; 0 disables).
    dropout_rng: PRNG key, required when dropout_rate > 0.
    dropout_algorithm: RngBitGenerator algorithm of its mask (dropout.ALGORITHMS).

  Returns:
    [B, T, H, V] in the dtype of `v`. The softmax is computed in float32.
  """
  d_k = q.shape[-1]
  logits = jnp.einsum("BTHK,BSHK->BHTS", q, k).astype(jnp.float32)
  logits = logits / jnp.sqrt(jnp.float32(d_k))  # the 1/sqrt(d_k) of Eq. 1
  logits = jnp.where(mask, logits, _MASKED)
  weights = jax.nn.softmax(logits, axis=-1)  # [B, H, T, S]
  if dropout_rate > 0.0:
    weights = dropout_lib.dropout(weights, dropout_rng, dropout_rate,
                                  algorithm=dropout_algorithm)
  return jnp.einsum("BHTS,BSHV->BTHV", weights.astype(v.dtype), v)


class MultiHeadAttention(nn.Module):
  """MultiHead(Q, K, V) = Concat(head_1..head_h) W_O (Eq. 2, Section 3.2.2).

  The paper's projections have no bias, so neither do these.

  Attributes:
    h: heads H.
    d_k: per-head query/key width K.
    d_v: per-head value width V.
    d_model: output width D.
    p_drop_attn: dropout on attention weights (0 in the paper).
    dropout_algorithm: RngBitGenerator algorithm of its masks (dropout.ALGORITHMS).
    dtype: dtype of the matmuls.
  """

  h: int
  d_k: int
  d_v: int
  d_model: int
  p_drop_attn: float = 0.0
  dropout_algorithm: str = dropout_lib.DEFAULT_ALGORITHM
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    part = nn.with_logical_partitioning
    self.w_q = self.param("W_Q", part(_qkv_init, ("embed", "heads", "d_k")),
                          (self.d_model, self.h, self.d_k))
    self.w_k = self.param("W_K", part(_qkv_init, ("embed", "heads", "d_k")),
                          (self.d_model, self.h, self.d_k))
    self.w_v = self.param("W_V", part(_qkv_init, ("embed", "heads", "d_v")),
                          (self.d_model, self.h, self.d_v))
    self.w_o = self.param("W_O", part(_out_init, ("heads", "d_v", "embed")),
                          (self.h, self.d_v, self.d_model))

  def _project(self, x: jax.Array, kernels: list[jax.Array]) -> list[jax.Array]:
    """x [B, T, D] through kernels [D, H, *] -> one [B, T, H, *] each, all in one matmul.

    The kernels' [H, *] dimensions are flattened and concatenated, so Q, K and V of a
    self-attention (or K and V of a cross-attention) take one [B*T, D] x [D, H(2K + V)] matmul
    forward and one each for the two gradients, instead of three small ones each.
    """
    x = x.astype(self.dtype)
    flat = [w.astype(self.dtype).reshape(self.d_model, -1) for w in kernels]
    y = linear(x, jnp.concatenate(flat, axis=1))  # [B, T, sum of the H * widths]
    parts = jnp.split(y, np.cumsum([f.shape[1] for f in flat])[:-1].tolist(), axis=-1)
    return [part.reshape(*part.shape[:-1], *w.shape[1:]) for part, w in zip(parts, kernels)]

  def project_kv(self, x_kv: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys [B, S, H, K] and values [B, S, H, V] from x_kv [B, S, D]."""
    k, v = self._project(x_kv, [self.w_k, self.w_v])
    return k, v

  def _attend_q(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                deterministic: bool) -> jax.Array:
    """Projected q [B, T, H, K], k, v -> heads, concatenated, through W_O: [B, T, D]."""
    rate = 0.0 if deterministic else self.p_drop_attn
    rng = self.make_rng("dropout") if rate > 0.0 else None
    heads = scaled_dot_product_attention(q, k, v, mask, dropout_rate=rate, dropout_rng=rng,
                                         dropout_algorithm=self.dropout_algorithm)
    concat = heads.reshape(*heads.shape[:-2], self.h * self.d_v)  # Concat(head_1..head_h)
    return linear(concat, self.w_o.astype(self.dtype).reshape(self.h * self.d_v, self.d_model))

  def attend(self, x_q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
             deterministic: bool) -> jax.Array:
    """Attends queries from x_q [B, T, D] to projected k, v; returns [B, T, D]."""
    (q,) = self._project(x_q, [self.w_q])
    return self._attend_q(q, k, v, mask, deterministic=deterministic)

  def __call__(self, x_q: jax.Array, x_kv: jax.Array, mask: jax.Array, *,
               deterministic: bool) -> jax.Array:
    """Multi-head attention of x_q [B, T, D] over x_kv [B, S, D]; mask as in Eq. 1; -> [B, T, D].

    Self-attention (x_q is x_kv) projects Q, K and V in one matmul.
    """
    if x_q is x_kv:
      q, k, v = self._project(x_q, [self.w_q, self.w_k, self.w_v])
      return self._attend_q(q, k, v, mask, deterministic=deterministic)
    k, v = self.project_kv(x_kv)
    return self.attend(x_q, k, v, mask, deterministic=deterministic)
