"""The encoder-decoder Transformer of "Attention Is All You Need" (Section 3, Figure 1).

Shape key:
  B batch, S source positions, T target positions, L decode-cache length, D d_model,
  H heads (h), K d_k, V d_v, F d_ff, C vocabulary.

Paper defaults, each a `TransformerConfig` field: post-LN residual blocks (Section 3.1),
residual dropout on every sub-layer output and on the embedding + position sums (Section 5.4),
sinusoidal positions with sin on even and cos on odd dimensions (Section 3.5), embeddings
multiplied by sqrt(d_model) and one matrix shared by both embeddings and the pre-softmax
projection (Section 3.4).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from transformer_jax import linear as linear_lib
from transformer_jax.attention import Mask, MultiHeadAttention
from transformer_jax.config import TransformerConfig
from transformer_jax.dropout import Dropout

PAD_ID = 0

_part = nn.with_logical_partitioning
_glorot = nn.initializers.xavier_uniform()


def sinusoids(positions: jax.Array, d_model: int) -> jax.Array:
  """Sinusoidal position encodings (Section 3.5).

  PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

  Args:
    positions: int array [...] of 0-based positions.
    d_model: even encoding width D.

  Returns:
    float32 [..., D], sin and cos interleaved as in the paper.
  """
  if d_model % 2:
    raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
  two_i = jnp.arange(0, d_model, 2, dtype=jnp.float32)  # [D/2]
  angles = positions[..., None].astype(jnp.float32) / (10000.0 ** (two_i / d_model))  # [..., D/2]
  pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # [..., D/2, 2]
  return pe.reshape(*positions.shape, d_model)  # [..., D]


# The decoder's self-attention: query t may attend to keys 0..t (Section 3.2.3).
CAUSAL = Mask(causal=True)


def padding_mask(tokens: jax.Array) -> Mask:
  """Keys that are not PAD in tokens [B, S], as lengths: sequences are right-padded."""
  return Mask(key_lengths=jnp.sum(tokens != PAD_ID, axis=1).astype(jnp.int32))


class FeedForward(nn.Module):
  """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (Section 3.3): [B, T, D] -> [B, T, D]."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    dtype = jnp.dtype(c.dtype)
    x = nn.Dense(c.d_ff, dtype=dtype, dot_general=linear_lib.dot_general,
                 kernel_init=_part(_glorot, ("embed", "mlp")),
                 bias_init=_part(nn.initializers.zeros, ("mlp",)), name="W_1")(x)  # [B, T, F]
    x = nn.relu(x)
    return nn.Dense(c.d_model, dtype=dtype, dot_general=linear_lib.dot_general,
                    kernel_init=_part(_glorot, ("mlp", "embed")),
                    bias_init=_part(nn.initializers.zeros, ("embed",)), name="W_2")(x)


def _batch_split(x: jax.Array) -> jax.Array:
  """[B, T, D] -> the same, constrained to be split by batch rows only (logical names; a no-op
  unless a mesh and rules are in context, see sharding.py). Without it a weight sharded along D
  (FSDP) would pull the activations' D split along with it."""
  return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


def _layer_norm(name: str, dtype: str) -> nn.LayerNorm:
  # Mean and variance are computed in float32 whatever `dtype` (flax's force_float32_reductions).
  return nn.LayerNorm(epsilon=1e-6, dtype=jnp.dtype(dtype), name=name,
                      scale_init=_part(nn.initializers.ones, ("embed",)),
                      bias_init=_part(nn.initializers.zeros, ("embed",)))


class _Residual(nn.Module):
  """One residual connection around a sub-layer, with dropout and LayerNorm.

  post (paper, Section 3.1 and 5.4): LayerNorm(x + Dropout(Sublayer(x))).
  pre (switch):                      x + Dropout(Sublayer(LayerNorm(x))).
  """

  config: TransformerConfig

  def setup(self):
    self.norm = _layer_norm("norm", self.config.dtype)
    self.dropout = _dropout(self.config)

  def __call__(self, x: jax.Array, sublayer: Callable[[jax.Array], jax.Array], *,
               deterministic: bool) -> jax.Array:
    if self.config.norm == "post":
      y = self.dropout(sublayer(x), deterministic=deterministic)
      return _batch_split(self.norm(x + y.astype(x.dtype)))
    y = self.dropout(sublayer(self.norm(x)), deterministic=deterministic)
    return _batch_split(x + y.astype(x.dtype))


def _dropout(c: TransformerConfig) -> Dropout:
  return Dropout(c.p_drop, algorithm=c.dropout_algorithm)


def _attention(c: TransformerConfig, name: str) -> MultiHeadAttention:
  return MultiHeadAttention(h=c.h, d_k=c.d_k, d_v=c.d_v, d_model=c.d_model,
                            p_drop_attn=c.p_drop_attn, dropout_algorithm=c.dropout_algorithm,
                            dtype=jnp.dtype(c.dtype), attention_impl=c.attention_impl, name=name)


class EncoderLayer(nn.Module):
  """Self-attention then feed-forward, each in a residual block (Section 3.1)."""

  config: TransformerConfig

  def setup(self):
    self.self_attn = _attention(self.config, "self_attn")
    self.ffn = FeedForward(self.config, name="ffn")
    self.res_attn = _Residual(self.config, name="res_attn")
    self.res_ffn = _Residual(self.config, name="res_ffn")

  def __call__(self, x: jax.Array, mask: Mask, *, deterministic: bool) -> jax.Array:
    """x [B, S, D], mask (the source's PAD keys) -> [B, S, D]."""
    x = self.res_attn(x, lambda z: self.self_attn(z, z, mask, deterministic=deterministic),
                      deterministic=deterministic)
    return self.res_ffn(x, self.ffn, deterministic=deterministic)


class DecoderLayer(nn.Module):
  """Masked self-attention, encoder-decoder attention, feed-forward (Section 3.1)."""

  config: TransformerConfig

  def setup(self):
    self.self_attn = _attention(self.config, "self_attn")
    self.cross_attn = _attention(self.config, "cross_attn")
    self.ffn = FeedForward(self.config, name="ffn")
    self.res_self = _Residual(self.config, name="res_self")
    self.res_cross = _Residual(self.config, name="res_cross")
    self.res_ffn = _Residual(self.config, name="res_ffn")

  def __call__(self, y: jax.Array, memory: jax.Array, cross_mask: Mask, *,
               deterministic: bool) -> jax.Array:
    """Teacher-forced pass. y [B, T, D], memory [B, S, D], cross_mask (source PAD) -> [B, T, D]."""
    y = self.res_self(y, lambda z: self.self_attn(z, z, CAUSAL, deterministic=deterministic),
                      deterministic=deterministic)
    y = self.res_cross(
        y, lambda z: self.cross_attn(z, memory, cross_mask, deterministic=deterministic),
        deterministic=deterministic)
    return self.res_ffn(y, self.ffn, deterministic=deterministic)

  def init_cache(self, memory: jax.Array, length: int) -> dict[str, jax.Array]:
    """Empty self-attention cache of `length` positions plus the projected memory.

    Returns a dict: k [B, L, H, K], v [B, L, H, V] (zeros), mem_k [B, S, H, K], mem_v [B, S, H, V].
    """
    c = self.config
    batch = memory.shape[0]
    dtype = jnp.dtype(c.dtype)
    mem_k, mem_v = self.cross_attn.project_kv(memory)
    return {"k": jnp.zeros((batch, length, c.h, c.d_k), dtype),
            "v": jnp.zeros((batch, length, c.h, c.d_v), dtype),
            "mem_k": mem_k, "mem_v": mem_v}

  def step(self, y: jax.Array, cache: dict[str, jax.Array], index: jax.Array,
           cross_mask: Mask) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One incremental decoding step at position `index`, O(L) work.

    y [B, 1, D] is the layer input at position `index`; the cache holds keys and values of
    positions < index. Returns the layer output [B, 1, D] and the cache with `index` filled.
    """
    new_cache = dict(cache)

    def self_attention(z):
      k, v = self.self_attn.project_kv(z)  # [B, 1, H, K], [B, 1, H, V]
      new_cache["k"] = jax.lax.dynamic_update_slice(cache["k"], k, (0, index, 0, 0))
      new_cache["v"] = jax.lax.dynamic_update_slice(cache["v"], v, (0, index, 0, 0))
      # Query length 1 over the whole cache: keys 0..index are filled, the rest are not.
      visible = Mask(key_lengths=jnp.full((z.shape[0],), index + 1, jnp.int32))
      return self.self_attn.attend(z, new_cache["k"], new_cache["v"], visible, deterministic=True)

    y = self.res_self(y, self_attention, deterministic=True)
    y = self.res_cross(
        y, lambda z: self.cross_attn.attend(z, cache["mem_k"], cache["mem_v"], cross_mask,
                                            deterministic=True),
        deterministic=True)
    return self.res_ffn(y, self.ffn, deterministic=True), new_cache


class Transformer(nn.Module):
  """Encoder-decoder Transformer (Figure 1) with a shared vocabulary.

  Methods (call through `model.apply(variables, ..., method=...)`):
    __call__(src, tgt_in): teacher-forced logits, for training and perplexity.
    encode(src) / decode(tgt_in, memory, src): the two halves.
    init_cache(memory, length) / decode_step(tokens, cache, index, src): incremental decoding.
  """

  config: TransformerConfig

  def setup(self):
    c = self.config
    # One matrix for source embedding, target embedding and pre-softmax projection
    # (Section 3.4). std d_model^-0.5 makes the sqrt(d_model)-scaled embeddings unit scale.
    self.embed = nn.Embed(c.vocab_size, c.d_model,
                          embedding_init=_part(nn.initializers.normal(c.d_model ** -0.5),
                                               ("vocab", "embed")), name="embed")
    if c.positions == "learned":
      self.pos_embed = nn.Embed(c.max_len, c.d_model, name="pos_embed",
                                embedding_init=_part(nn.initializers.normal(0.02),
                                                     ("length", "embed")))
    self.encoder_layers = [EncoderLayer(c, name=f"encoder_{i}") for i in range(c.n_layers)]
    self.decoder_layers = [DecoderLayer(c, name=f"decoder_{i}") for i in range(c.n_layers)]
    if c.norm == "pre":
      self.encoder_norm = _layer_norm("encoder_norm", c.dtype)
      self.decoder_norm = _layer_norm("decoder_norm", c.dtype)
    self.dropout = _dropout(c)

  def _embed(self, tokens: jax.Array, positions: jax.Array, *, deterministic: bool) -> jax.Array:
    """tokens [B, T] int, positions [T] or [B, T] int -> Dropout(E[tokens] * sqrt(D) + PE) [B, T, D]."""
    c = self.config
    # Under FSDP the table's D is split; gather it before the lookup (as for any FSDP weight)
    # so the lookup and its gradient stay split by batch rows.
    table = nn.with_logical_constraint(self.embed.embedding, ("vocab", "act_embed"))  # [C, D]
    x = _batch_split(jnp.take(table, tokens, axis=0))  # [B, T, D]
    x = x * jnp.sqrt(jnp.float32(c.d_model))  # Section 3.4
    if c.positions == "sinusoidal":
      x = x + sinusoids(positions, c.d_model)
    else:
      x = x + self.pos_embed(positions)
    x = self.dropout(x, deterministic=deterministic)  # Section 5.4
    return x.astype(jnp.dtype(c.dtype))

  def encode(self, src: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """src [B, S] int32 (PAD = 0) -> memory [B, S, D]."""
    mask = padding_mask(src)
    x = self._embed(src, jnp.arange(src.shape[1]), deterministic=deterministic)
    for layer in self.encoder_layers:
      x = layer(x, mask, deterministic=deterministic)
    if self.config.norm == "pre":
      x = self.encoder_norm(x)
    return x

  def _logits(self, y: jax.Array) -> jax.Array:
    """[..., D] -> float32 [..., C] through the shared embedding matrix (Section 3.4).

    The matmul runs in `dtype` (forward and backward); its output is cast to float32 so the
    softmax and the loss that follow are float32 (a bfloat16 log_softmax is unstable, as
    flax's WMT example found).
    """
    dtype = jnp.dtype(self.config.dtype)
    logits = jnp.einsum("...D,CD->...C", y.astype(dtype), self.embed.embedding.astype(dtype))
    return logits.astype(jnp.float32)

  def decode(self, tgt_in: jax.Array, memory: jax.Array, src: jax.Array, *,
             deterministic: bool = True) -> jax.Array:
    """tgt_in [B, T] (BOS + shifted target), memory [B, S, D], src [B, S] -> logits [B, T, C]."""
    cross_mask = padding_mask(src)
    y = self._embed(tgt_in, jnp.arange(tgt_in.shape[1]), deterministic=deterministic)
    for layer in self.decoder_layers:
      y = layer(y, memory, cross_mask, deterministic=deterministic)
    if self.config.norm == "pre":
      y = self.decoder_norm(y)
    return self._logits(y)

  def __call__(self, src: jax.Array, tgt_in: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """Teacher-forced forward pass: src [B, S], tgt_in [B, T] int32 -> float32 logits [B, T, C]."""
    memory = self.encode(src, deterministic=deterministic)
    return self.decode(tgt_in, memory, src, deterministic=deterministic)

  def init_cache(self, memory: jax.Array, length: int) -> list[dict[str, jax.Array]]:
    """Per-layer decoding caches for up to `length` target positions (see DecoderLayer)."""
    return [layer.init_cache(memory, length) for layer in self.decoder_layers]

  def decode_step(self, tokens: jax.Array, cache: list[dict[str, jax.Array]], index: jax.Array,
                  src: jax.Array) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
    """Logits for position index+1 given the token at `index`.

    Args:
      tokens: [B] int32, the decoder input at position `index` (BOS at index 0).
      cache: from `init_cache`, filled for positions < index.
      index: scalar int32 position.
      src: [B, S] source tokens (for the cross-attention mask).

    Returns:
      (float32 logits [B, C], cache filled up to `index`).
    """
    y = self._embed(tokens[:, None], index[None], deterministic=True)  # [B, 1, D]
    cross_mask = padding_mask(src)
    new_cache = []
    for layer, layer_cache in zip(self.decoder_layers, cache):
      y, layer_cache = layer.step(y, layer_cache, index, cross_mask)
      new_cache.append(layer_cache)
    if self.config.norm == "pre":
      y = self.decoder_norm(y)
    return self._logits(y[:, 0]), new_cache


def param_shapes(cfg: TransformerConfig):
  """The parameter tree of `Transformer(cfg)` as unboxed jax.ShapeDtypeStruct leaves, from
  shapes only: nothing is initialised or allocated (jax.eval_shape)."""
  x = jnp.zeros((1, 2), jnp.int32)
  shapes = jax.eval_shape(Transformer(cfg).init, jax.random.PRNGKey(0), x, x)
  return nn.meta.unbox(shapes["params"])


def count_params(params) -> int:
  """Number of scalar parameters in a (possibly boxed) parameter tree."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(nn.meta.unbox(params))))
