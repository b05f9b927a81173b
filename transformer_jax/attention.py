"""Scaled dot-product and multi-head attention (paper Section 3.2, Eq. 1 and 2).

Shape key:
  B batch, T query positions, S key positions, D d_model, H heads (h), K d_k, V d_v.

Per-head kernels are 3-D so the einsums read like the paper: W_Q, W_K are [D, H, K], W_V is
[D, H, V], W_O is [H, V, D]. Parameters carry logical axis names only ('embed', 'heads', 'd_k',
'd_v'); which mesh axis each maps to is decided elsewhere.

Eq. 1 has three implementations, all the same function (tests/test_attention.py), chosen by
`model.attention_impl` (`choose_implementation`): 'einsum' (`scaled_dot_product_attention`,
the only one with attention-weight dropout and d_k != d_v), 'xla' and 'cudnn'
(`jax.nn.dot_product_attention`; cuDNN's fused flash-attention kernel on NVIDIA GPUs). Which
keys a query sees is a `Mask`: key lengths (right padding) and causality, the form the fused
kernel takes, rather than a dense boolean mask it would turn into an additive bias.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from transformer_jax import dropout as dropout_lib
from transformer_jax.config import ConfigError
from transformer_jax.linear import linear

IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn")
# cuDNN's fused attention: bfloat16 (or float16) operands, head widths a multiple of 8 up to
# 128 (256 on Hopper; jax/_src/cudnn/fused_attention_stablehlo.py, check_is_flash_attention).
_CUDNN_MAX_D_K = 128
_log = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class Mask:
  """Which keys each query may attend to (Eq. 1's masking, Section 3.2.3).

  Attributes:
    key_lengths: int32 [B]; query rows of batch row b see keys 0..key_lengths[b]-1 (keys are
      right-padded). None: every key.
    causal: query t also sees only keys s <= t (the decoder's self-attention; T == S).
  """

  key_lengths: Optional[jax.Array] = None
  causal: bool = False

  def dense(self, t: int, s: int) -> jax.Array:
    """bool, broadcastable to [B, 1, T, S]: True where query t may attend to key s."""
    mask = jnp.ones((1, 1, t, s), bool)
    if self.causal:
      mask = mask & jnp.tril(jnp.ones((t, s), bool))[None, None]
    if self.key_lengths is not None:
      mask = mask & (jnp.arange(s)[None, :] < self.key_lengths[:, None])[:, None, None, :]
    return mask


def choose_implementation(requested: str, *, platform: Optional[str], dtype: str, d_k: int,
                          d_v: int, p_drop_attn: float) -> tuple[str, str]:
  """The attention implementation for `model.attention_impl`, and why (a pure function).

  'auto' takes cuDNN's fused kernel on a GPU when it can serve the model (bfloat16, d_k == d_v,
  d_k a multiple of 8 and <= 128, no attention-weight dropout), otherwise 'einsum': on the CPU
  'xla' measured no faster in float32 and slower in bfloat16 (benchmarks/RESULTS.md); on
  a GPU in float32 and on TPU both are XLA's two matmuls and softmax, not yet compared there.

  Args:
    requested: one of IMPLEMENTATIONS.
    platform: jax.default_backend(): 'cpu', 'gpu' or 'tpu'; None = not known yet (the
      config check before any backend starts: only the platform-free refusals).
    dtype: model.dtype, 'float32' or 'bfloat16'.
    d_k, d_v: per-head query/key and value widths.
    p_drop_attn: dropout on attention weights (only 'einsum' has it).

  Returns:
    (implementation, reason): 'einsum' | 'xla' | 'cudnn' and a short phrase for the log.

  Raises:
    ConfigError: an explicit choice that cannot serve the model; names the keys.
  """
  gpu = platform in ("gpu", "cuda")
  cannot = []  # why the fused paths cannot serve this model
  if d_k != d_v:
    cannot.append(f"jax.nn.dot_product_attention needs equal key and value widths, but "
                  f"config.model.d_k={d_k} != config.model.d_v={d_v}")
  if p_drop_attn > 0:
    cannot.append(f"it has no attention-weight dropout (config.model.p_drop_attn="
                  f"{p_drop_attn})")
  cudnn_cannot = list(cannot)
  if not gpu and platform is not None:
    cudnn_cannot.append(f"cuDNN needs an NVIDIA GPU, and jax's platform is {platform!r}")
  if dtype != "bfloat16":
    cudnn_cannot.append(f"cuDNN's fused kernel takes bfloat16, not config.model.dtype={dtype!r}")
  if d_k % 8 or d_k > _CUDNN_MAX_D_K:
    cudnn_cannot.append(f"cuDNN needs config.model.d_k a multiple of 8 and <= "
                        f"{_CUDNN_MAX_D_K}, got {d_k}")
  if requested == "einsum":
    return "einsum", "config.model.attention_impl='einsum'"
  if requested in ("xla", "cudnn"):
    problems = cannot if requested == "xla" else cudnn_cannot
    if problems:
      raise ConfigError(f"config.model.attention_impl={requested!r} cannot serve this model: "
                        + "; ".join(problems) + ". Use 'einsum' or 'auto'")
    return requested, f"config.model.attention_impl={requested!r}"
  if requested != "auto":
    raise ConfigError(f"config.model.attention_impl must be one of {IMPLEMENTATIONS}, got "
                      f"{requested!r}")
  if not cudnn_cannot:
    return "cudnn", "auto: cuDNN fused attention (GPU, bfloat16)"
  return "einsum", "auto: einsum, since " + ("; ".join(cudnn_cannot) if gpu else
                                             f"the platform is {platform!r}")


def describe(c) -> str:
  """'IMPL (reason)' for the log: what `model.attention_impl` of TransformerConfig `c` takes
  on this process's platform."""
  impl, reason = choose_implementation(c.attention_impl, platform=jax.default_backend(),
                                       dtype=c.dtype, d_k=c.d_k, d_v=c.d_v,
                                       p_drop_attn=c.p_drop_attn)
  return f"{impl} ({reason})"


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask, *, implementation: str,
              dropout_rate: float = 0.0, dropout_rng: Optional[jax.Array] = None,
              dropout_algorithm: str = dropout_lib.DEFAULT_ALGORITHM) -> jax.Array:
  """Eq. 1 through `implementation` ('einsum' | 'xla' | 'cudnn', see choose_implementation).

  Args:
    q: [B, T, H, K]; k: [B, S, H, K]; v: [B, S, H, V] (V == K unless 'einsum').
    mask: which keys each query sees (Mask).
    dropout_rate, dropout_rng, dropout_algorithm: attention-weight dropout ('einsum' only).

  Returns:
    [B, T, H, V] in the dtype of `v`; the softmax is float32 on every path.

  Raises:
    ValueError: dropout asked of a fused path (choose_implementation refuses it earlier).
  """
  if implementation == "einsum":
    return scaled_dot_product_attention(q, k, v, mask.dense(q.shape[1], k.shape[1]),
                                        dropout_rate=dropout_rate, dropout_rng=dropout_rng,
                                        dropout_algorithm=dropout_algorithm)
  if dropout_rate > 0.0:
    raise ValueError(f"attention implementation {implementation!r} has no dropout")
  lengths = mask.key_lengths
  if lengths is not None:
    lengths = lengths.astype(jnp.int32)
    if implementation == "cudnn":
      # A row with no key at all (an all-PAD batch row) is given key 0 (the other paths
      # average all its keys uniformly): the row is padding, its output is never used.
      lengths = jnp.maximum(lengths, 1)
  return jax.nn.dot_product_attention(q, k, v, is_causal=mask.causal,
                                      key_value_seq_lengths=lengths,
                                      implementation=implementation).astype(v.dtype)


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
    attention_impl: Eq. 1's implementation, one of IMPLEMENTATIONS ('auto' picks per platform,
      choose_implementation).
  """

  h: int
  d_k: int
  d_v: int
  d_model: int
  p_drop_attn: float = 0.0
  dropout_algorithm: str = dropout_lib.DEFAULT_ALGORITHM
  dtype: jnp.dtype = jnp.float32
  attention_impl: str = "einsum"

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

  def _attend_q(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask, *,
                deterministic: bool) -> jax.Array:
    """Projected q [B, T, H, K], k, v -> heads, concatenated, through W_O: [B, T, D]."""
    rate = 0.0 if deterministic else self.p_drop_attn
    rng = self.make_rng("dropout") if rate > 0.0 else None
    impl, _ = choose_implementation(self.attention_impl, platform=jax.default_backend(),
                                    dtype=jnp.dtype(self.dtype).name, d_k=self.d_k, d_v=self.d_v,
                                    p_drop_attn=self.p_drop_attn)
    kwargs = dict(dropout_rate=rate, dropout_rng=rng, dropout_algorithm=self.dropout_algorithm)
    try:
      heads = attention(q, k, v, mask, implementation=impl, **kwargs)
    except (NotImplementedError, RuntimeError, ValueError) as e:
      if impl != "cudnn" or self.attention_impl != "auto":
        raise
      _log.warning("attention: cuDNN cannot serve q %s, k %s (%s); using 'xla'", q.shape,
                   k.shape, e)
      heads = attention(q, k, v, mask, implementation="xla", **kwargs)
    concat = heads.reshape(*heads.shape[:-2], self.h * self.d_v)  # Concat(head_1..head_h)
    return linear(concat, self.w_o.astype(self.dtype).reshape(self.h * self.d_v, self.d_model))

  def attend(self, x_q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask, *,
             deterministic: bool) -> jax.Array:
    """Attends queries from x_q [B, T, D] to projected k, v; returns [B, T, D]."""
    (q,) = self._project(x_q, [self.w_q])
    return self._attend_q(q, k, v, mask, deterministic=deterministic)

  def __call__(self, x_q: jax.Array, x_kv: jax.Array, mask: Mask, *,
               deterministic: bool) -> jax.Array:
    """Multi-head attention of x_q [B, T, D] over x_kv [B, S, D] (keys `mask` allows) -> [B, T, D].

    Self-attention (x_q is x_kv) projects Q, K and V in one matmul.
    """
    if x_q is x_kv:
      q, k, v = self._project(x_q, [self.w_q, self.w_k, self.w_v])
      return self._attend_q(q, k, v, mask, deterministic=deterministic)
    k, v = self.project_kv(x_kv)
    return self.attend(x_q, k, v, mask, deterministic=deterministic)
