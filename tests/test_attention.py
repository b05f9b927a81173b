"""Eq. 1's implementations (attention.py) against a naive reference, the automatic choice and
its refusals, and the whole model through 'xla' against 'einsum' (forward, gradients, cached
decoding).

The reference is written independently: a per-head loop with an explicit exp / sum softmax
over the allowed keys only (numpy float64 for outputs; the same loop in jnp for gradients).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.attention import Mask, attention, choose_implementation
from transformer_jax.config import ConfigError, TransformerConfig, default_config, validate
from transformer_jax.model import Transformer

B, H, K = 2, 2, 8
CASES = {  # name -> (T, S, key lengths or None, causal)
    "padded": (5, 7, [7, 3], False),  # cross-attention over right-padded keys
    "causal": (6, 6, None, True),  # the decoder's self-attention
    "cache": (1, 6, [4, 4], False),  # one decoding step over a cache filled to position 3
}


def _allowed(t, s, lengths, causal):
  """bool [B, T, S] of the reference."""
  ok = np.ones((B, t, s), bool)
  for b in range(B):
    for ti in range(t):
      for si in range(s):
        ok[b, ti, si] = (lengths is None or si < lengths[b]) and (not causal or si <= ti)
  return ok


def _naive(q, k, v, allowed):
  """numpy float64, per batch row, head and query: softmax over the allowed keys only."""
  out = np.zeros((*q.shape[:3], v.shape[-1]))
  for b in range(q.shape[0]):
    for h in range(q.shape[2]):
      for t in range(q.shape[1]):
        idx = np.nonzero(allowed[b, t])[0]
        scores = np.array([q[b, t, h] @ k[b, s, h] for s in idx]) / math.sqrt(K)
        w = np.exp(scores - scores.max())
        out[b, t, h] = (w / w.sum()) @ v[b, idx, h]
  return out


@jax.jit
def _naive_jnp(q, k, v, allowed):
  """The same as broadcast products and sums in jnp (no einsum, no library softmax), for
  gradients: allowed bool [B, T, S]."""
  scores = jnp.sum(q[:, :, None] * k[:, None], axis=-1) / math.sqrt(K)  # [B, T, S, H]
  scores = jnp.where(allowed[..., None], scores, -jnp.inf)
  e = jnp.exp(scores - jnp.max(scores, axis=2, keepdims=True))
  w = e / jnp.sum(e, axis=2, keepdims=True)  # [B, T, S, H]
  return jnp.sum(w[..., None] * v[:, None], axis=2)  # [B, T, H, V]


def _inputs(t, s, d_v, seed):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(B, t, H, K)).astype(np.float32),
          rng.normal(size=(B, s, H, K)).astype(np.float32),
          rng.normal(size=(B, s, H, d_v)).astype(np.float32))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", ["einsum", "xla"])
def test_outputs_and_gradients_match_the_naive_reference(impl, case):
  t, s, lengths, causal = CASES[case]
  q, k, v = _inputs(t, s, K, seed=len(case))
  allowed = _allowed(t, s, lengths, causal)
  mask = Mask(key_lengths=None if lengths is None else jnp.asarray(lengths, jnp.int32),
              causal=causal)
  out = np.asarray(attention(q, k, v, mask, implementation=impl))
  want = _naive(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), allowed)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(_naive_jnp(q, k, v, allowed), want, rtol=1e-5, atol=1e-5)

  cot = np.random.default_rng(9).normal(size=out.shape).astype(np.float32)
  grads = jax.jit(jax.grad(lambda *a: jnp.sum(attention(*a, mask, implementation=impl) * cot),
                           argnums=(0, 1, 2)))(q, k, v)
  ref = jax.jit(jax.grad(lambda *a: jnp.sum(_naive_jnp(*a, allowed) * cot),
                         argnums=(0, 1, 2)))(q, k, v)
  for name, got, expect in zip("qkv", grads, ref):
    np.testing.assert_allclose(got, expect, rtol=2e-5, atol=2e-5, err_msg=f"d{name}")


def test_dk_ne_dv_is_served_by_the_einsum_path():
  t, s, lengths, causal = CASES["padded"]
  q, k, v = _inputs(t, s, 12, seed=3)
  impl, _ = choose_implementation("auto", platform="cpu", dtype="float32", d_k=K, d_v=12,
                                  p_drop_attn=0.0)
  assert impl == "einsum"
  out = attention(q, k, v, Mask(key_lengths=jnp.asarray(lengths, jnp.int32)), implementation=impl)
  want = _naive(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
                _allowed(t, s, lengths, causal))
  assert out.shape == (B, t, H, 12)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("platform,dtype,d_k,d_v,p_attn,want", [
    ("cpu", "float32", 64, 64, 0.0, "einsum"),
    ("cpu", "bfloat16", 64, 64, 0.0, "einsum"),
    ("tpu", "bfloat16", 64, 64, 0.0, "einsum"),
    ("gpu", "bfloat16", 64, 64, 0.0, "cudnn"),
    ("gpu", "bfloat16", 128, 128, 0.0, "cudnn"),
    ("gpu", "float32", 64, 64, 0.0, "einsum"),  # cuDNN's kernel takes 16-bit operands
    ("gpu", "bfloat16", 64, 48, 0.0, "einsum"),  # d_k != d_v
    ("gpu", "bfloat16", 256, 256, 0.0, "einsum"),  # over the head-width limit
    ("gpu", "bfloat16", 60, 60, 0.0, "einsum"),  # not a multiple of 8
    ("gpu", "bfloat16", 64, 64, 0.1, "einsum"),  # attention-weight dropout
])
def test_automatic_choice(platform, dtype, d_k, d_v, p_attn, want):
  impl, reason = choose_implementation("auto", platform=platform, dtype=dtype, d_k=d_k, d_v=d_v,
                                       p_drop_attn=p_attn)
  assert impl == want and reason.startswith("auto")
  if platform == "gpu" and want == "einsum":  # the log says why cuDNN was not taken
    assert "config.model." in reason


@pytest.mark.parametrize("requested,kwargs,named", [
    ("xla", dict(d_v=48), r"config.model.d_k=64 != config.model.d_v=48"),
    ("cudnn", dict(d_v=48), r"config.model.d_v=48"),
    ("xla", dict(p_drop_attn=0.1), r"config.model.p_drop_attn=0.1"),
    ("cudnn", dict(p_drop_attn=0.1), r"config.model.p_drop_attn=0.1"),
    ("cudnn", dict(dtype="float32", platform="gpu"), r"config.model.dtype='float32'"),
    ("cudnn", dict(platform="cpu"), r"needs an NVIDIA GPU.*'cpu'"),
    ("fused", {}, r"config.model.attention_impl must be one of"),
])
def test_impossible_choices_are_refused_naming_the_keys(requested, kwargs, named):
  args = {**dict(platform="gpu", dtype="bfloat16", d_k=64, d_v=64, p_drop_attn=0.0), **kwargs}
  with pytest.raises(ConfigError, match=named):
    choose_implementation(requested, **args)


def test_explicit_choices_that_can_serve_are_taken():
  args = dict(dtype="bfloat16", d_k=64, d_v=64, p_drop_attn=0.0)
  assert choose_implementation("xla", platform="cpu", **args)[0] == "xla"
  assert choose_implementation("cudnn", platform="gpu", **args)[0] == "cudnn"
  assert choose_implementation("einsum", platform="gpu", **args)[0] == "einsum"


def test_config_check_refuses_before_any_work():
  config = default_config()
  config.model.attention_impl = "xla"
  config.model.d_v = 32
  with pytest.raises(ConfigError, match=r"attention_impl='xla'.*config.model.d_v=32"):
    validate(config)
  with pytest.raises(ConfigError, match=r"p_drop_attn=0.2"):
    TransformerConfig(vocab_size=40, attention_impl="cudnn", p_drop_attn=0.2)


@pytest.fixture(scope="module")
def two_models():
  """The tiny model (d_k = d_v) through 'einsum' and through 'xla', one set of parameters."""
  base = dict(vocab_size=40, d_model=32, d_ff=64, h=4, d_k=8, d_v=8, n_layers=1, p_drop=0.0)
  models = {impl: Transformer(TransformerConfig(**base, attention_impl=impl))
            for impl in ("einsum", "xla")}
  src = np.array([[5, 9, 7, 11, 3, 0, 0], [6, 8, 10, 12, 14, 16, 3], [0] * 7], np.int32)
  tgt = np.array([[2, 20, 21, 22, 23, 24], [2, 30, 31, 32, 33, 34], [2, 0, 0, 0, 0, 0]],
                 np.int32)
  params = nn.meta.unbox(jax.jit(models["einsum"].init)(jax.random.PRNGKey(0), src, tgt)["params"])
  return models, params, src, tgt


def test_model_through_xla_equals_einsum(two_models):
  """Logits of padded batches (an all-PAD row included); gradients are checked above."""
  models, params, src, tgt = two_models
  logits = {impl: np.asarray(jax.jit(m.apply)({"params": params}, src, tgt))
            for impl, m in models.items()}
  np.testing.assert_allclose(logits["xla"], logits["einsum"], rtol=1e-5, atol=1e-5)


def test_cached_decoding_through_xla_equals_the_full_forward(two_models):
  models, params, src, tgt = two_models
  model, v = models["xla"], {"params": params}
  full = np.asarray(jax.jit(model.apply)(v, src, tgt))  # [B, T, C]
  cache = jax.jit(lambda: model.apply(v, model.apply(v, src, method=Transformer.encode),
                                      tgt.shape[1], method=Transformer.init_cache))()
  step = jax.jit(lambda c, tok, i: model.apply(v, tok, c, i, src, method=Transformer.decode_step))
  for i in range(tgt.shape[1]):
    logits, cache = step(cache, tgt[:, i], jnp.int32(i))
    np.testing.assert_allclose(np.asarray(logits), full[:, i], rtol=1e-4, atol=1e-4)


def test_train_refuses_cudnn_off_a_gpu_before_any_work(tiny_data, tmp_path):
  from conftest import tiny_config
  from transformer_jax import train as train_lib
  config = tiny_config(tiny_data, **{"model.attention_impl": "cudnn",
                                     "model.dtype": "bfloat16"})
  with pytest.raises(ConfigError, match=r"needs an NVIDIA GPU, and jax's platform is 'cpu'"):
    train_lib.train(config, tmp_path, log=lambda *_: None)
  assert not (tmp_path / "spm.model").exists()  # refused before the vocabulary
