"""Tests for transformer_jax.model and attention against independent numpy references.

Attention is checked against a naive per-head, per-query loop; sinusoids against the paper's
formula written with `math`; the base parameter count (shapes only, via jax.eval_shape; the
Table 3 rows are in test_table3.py).
One tiny model (d_k != d_v) and one set of input shapes are reused so little is compiled.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.attention import Mask, MultiHeadAttention, scaled_dot_product_attention
from transformer_jax.config import (ConfigError, TransformerConfig, default_config, load_file,
                                    model_config)
from transformer_jax.model import PAD_ID, Transformer, count_params, param_shapes, sinusoids

ROOT = Path(__file__).resolve().parents[1]
C, D, F, H, K, V = 40, 32, 64, 4, 8, 12  # C appears in no other dimension
TINY = TransformerConfig(vocab_size=C, d_model=D, d_ff=F, h=H, d_k=K, d_v=V, n_layers=2)
SRC = np.array([[5, 9, 7, 11, 3, 0, 0], [6, 8, 10, 12, 14, 16, 3]], np.int32)  # [B=2, S=7]
TGT = np.array([[2, 20, 21, 22, 23, 24], [2, 30, 31, 32, 33, 34]], np.int32)  # [B=2, T=6]


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


@pytest.fixture(scope="module")
def tiny():
  """(model, boxed variables, unboxed params, jitted forward(params, src, tgt_in))."""
  model = Transformer(TINY)
  variables = model.init(jax.random.PRNGKey(0), SRC, TGT)
  params = nn.meta.unbox(variables["params"])
  fwd = jax.jit(lambda p, s, t: model.apply({"params": p}, s, t))
  return model, variables, params, fwd


# -- attention ------------------------------------------------------------------------------------

def test_scaled_dot_product_attention_matches_naive_loop():
  rng = np.random.default_rng(0)
  b, t, s = 2, 5, 7
  q = rng.normal(size=(b, t, H, K)).astype(np.float32)
  k = rng.normal(size=(b, s, H, K)).astype(np.float32)
  v = rng.normal(size=(b, s, H, V)).astype(np.float32)
  mask = rng.random((b, H, t, s)) < 0.6
  mask[0, 1, 2, :] = False  # a query that may attend to nothing
  out = np.asarray(scaled_dot_product_attention(q, k, v, jnp.asarray(mask)))
  assert out.shape == (b, t, H, V) and np.all(np.isfinite(out))
  want = np.zeros((b, t, H, V))
  for bi in range(b):
    for hi in range(H):
      for ti in range(t):
        allowed = mask[bi, hi, ti]
        scores = np.array([q[bi, ti, hi] @ k[bi, si, hi] / math.sqrt(K) for si in range(s)])
        w = _softmax(np.where(allowed, scores, -np.inf)) if allowed.any() else np.full(s, 1 / s)
        want[bi, ti, hi] = sum(w[si] * v[bi, si, hi] for si in range(s))
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_multi_head_attention_matches_numpy_with_dk_ne_dv():
  rng = np.random.default_rng(1)
  x_q = rng.normal(size=(2, 5, D)).astype(np.float32)
  x_kv = rng.normal(size=(2, 7, D)).astype(np.float32)
  lengths = np.array([7, 4], np.int32)  # row 1: keys 4..6 are padding
  mask = Mask(key_lengths=jnp.asarray(lengths))
  mha = MultiHeadAttention(h=H, d_k=K, d_v=V, d_model=D)
  variables = mha.init(jax.random.PRNGKey(1), x_q, x_kv, mask, deterministic=True)
  p = {n: np.asarray(a, np.float64) for n, a in nn.meta.unbox(variables["params"]).items()}
  assert p["W_Q"].shape == (D, H, K) and p["W_K"].shape == (D, H, K)
  assert p["W_V"].shape == (D, H, V) and p["W_O"].shape == (H, V, D)
  out = np.asarray(mha.apply(variables, x_q, x_kv, mask, deterministic=True))
  want = np.zeros((2, 5, D))
  for b in range(2):
    for t in range(5):
      heads = []
      for h in range(H):
        q = x_q[b, t] @ p["W_Q"][:, h]  # [K]
        scores = np.array([q @ (x_kv[b, s] @ p["W_K"][:, h]) for s in range(7)]) / math.sqrt(K)
        w = _softmax(np.where(np.arange(7) < lengths[b], scores, -np.inf))
        heads.append(sum(w[s] * (x_kv[b, s] @ p["W_V"][:, h]) for s in range(7)))  # [V]
      want[b, t] = np.concatenate(heads) @ p["W_O"].reshape(H * V, D)  # Concat(heads) W_O
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


# -- positions and embeddings -------------------------------------------------------------------

@pytest.mark.parametrize("d_model", [6, 32])
def test_sinusoids_match_paper_formula(d_model):
  n = 100
  got = np.asarray(sinusoids(jnp.arange(n), d_model))
  want = np.zeros((n, d_model))
  for pos in range(n):
    for i in range(d_model // 2):
      angle = pos / 10000 ** (2 * i / d_model)
      want[pos, 2 * i], want[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
  np.testing.assert_allclose(got, want, atol=3e-5)


def test_sinusoids_reject_odd_width():
  with pytest.raises(ValueError, match="even d_model"):
    sinusoids(jnp.arange(3), 7)


def test_embeddings_scaled_by_sqrt_d_model(tiny):
  model, _, params, _ = tiny
  positions = np.arange(TGT.shape[1])
  got = model.apply({"params": params}, TGT, positions, deterministic=True,
                    method=Transformer._embed)
  table = np.asarray(params["embed"]["embedding"], np.float64)
  pe = np.array([[math.sin(p / 10000 ** (i / D)) if i % 2 == 0 else
                  math.cos(p / 10000 ** ((i - 1) / D)) for i in range(D)] for p in positions])
  np.testing.assert_allclose(got, table[TGT] * math.sqrt(D) + pe, rtol=1e-5, atol=1e-5)


def test_one_shared_embedding_and_tied_output_projection(tiny):
  model, _, params, _ = tiny
  leaves = jax.tree_util.tree_leaves_with_path(params)
  with_vocab = [(jax.tree_util.keystr(path), x.shape) for path, x in leaves if C in x.shape]
  assert with_vocab == [("['embed']['embedding']", (C, D))]
  logits, state = model.apply({"params": params}, SRC, TGT, capture_intermediates=True,
                              mutable=["intermediates"])
  last = state["intermediates"][f"decoder_{TINY.n_layers - 1}"]["__call__"][0]  # [B, T, D]
  table = np.asarray(params["embed"]["embedding"], np.float64)
  np.testing.assert_allclose(logits, np.asarray(last, np.float64) @ table.T, rtol=1e-4, atol=1e-4)


def test_every_parameter_has_logical_axis_names(tiny):
  _, variables, _, _ = tiny
  boxes = jax.tree_util.tree_leaves(variables["params"],
                                    is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))
  assert len(boxes) > 10
  for box in boxes:
    assert isinstance(box, nn.LogicallyPartitioned), type(box)
    assert len(box.names) == box.value.ndim, (box.names, box.value.shape)
    assert all(isinstance(n, str) for n in box.names), box.names


# -- masking --------------------------------------------------------------------------------------

def test_decoder_is_causal(tiny):
  _, _, params, fwd = tiny
  base = np.asarray(fwd(params, SRC, TGT))
  for j in range(TGT.shape[1]):
    tgt = TGT.copy()
    tgt[:, j] = 4 + (tgt[:, j] + 7) % (C - 4)  # a different non-special token
    out = np.asarray(fwd(params, SRC, tgt))
    np.testing.assert_allclose(out[:, :j], base[:, :j], atol=1e-6, err_msg=f"j={j}")
    assert np.abs(out[:, j:] - base[:, j:]).max() > 1e-3, f"j={j}: change had no effect"


def test_source_padding_is_ignored(tiny):
  _, _, params, fwd = tiny
  longer = np.pad(SRC, ((0, 0), (0, 3)), constant_values=PAD_ID)  # [B, S + 3]
  np.testing.assert_allclose(fwd(params, longer, TGT), fwd(params, SRC, TGT), atol=1e-5)
  changed = SRC.copy()
  changed[0, 1] = 13  # a real source token does matter
  assert np.abs(np.asarray(fwd(params, changed, TGT) - fwd(params, SRC, TGT))).max() > 1e-3


# -- switches and configs -------------------------------------------------------------------------

def _layer_outputs_normalized(model, params):
  _, state = model.apply({"params": params}, SRC, TGT, capture_intermediates=True,
                         mutable=["intermediates"])
  x = np.asarray(state["intermediates"]["encoder_0"]["__call__"][0], np.float64)  # [B, S, D]
  return np.allclose(x.mean(-1), 0.0, atol=1e-4) and np.allclose(x.var(-1), 1.0, atol=1e-3)


def test_post_ln_is_default():
  assert TransformerConfig(vocab_size=C).norm == "post"
  assert default_config().model.norm == "post"


def test_pre_ln_and_learned_positions_build_and_run(tiny):
  model, _, params, _ = tiny
  # Post-LN: each layer's output is a LayerNorm output (unit scale, zero shift at init).
  assert "encoder_norm" not in params and _layer_outputs_normalized(model, params)
  cfg = TransformerConfig(vocab_size=C, d_model=D, d_ff=F, h=H, d_k=K, d_v=V, n_layers=2,
                          norm="pre", positions="learned", max_len=16)
  pre = Transformer(cfg)
  pre_params = nn.meta.unbox(pre.init(jax.random.PRNGKey(2), SRC, TGT)["params"])
  assert pre_params["pos_embed"]["embedding"].shape == (16, D)
  assert "encoder_norm" in pre_params and "decoder_norm" in pre_params
  assert not _layer_outputs_normalized(pre, pre_params)  # x + Sublayer(LN(x)) is not normalized
  logits = pre.apply({"params": pre_params}, SRC, TGT)
  assert logits.shape == (2, TGT.shape[1], C) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("override,key", [
    ({"h": 0}, "config.model.h"),
    ({"d_v": -1}, "config.model.d_v"),
    ({"d_k": 8.0}, "config.model.d_k"),
    ({"p_drop": -0.1}, "config.model.p_drop"),
    ({"p_drop_attn": 1.0}, "config.model.p_drop_attn"),
    ({"positions": "foo"}, "config.model.positions"),
    ({"norm": "sandwich"}, "config.model.norm"),
    ({"dtype": "float16"}, "config.model.dtype"),
    ({"dropout_algorithm": "mt19937"}, "config.model.dropout_algorithm"),
])
def test_config_errors_name_the_key(override, key):
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    TransformerConfig(**{"vocab_size": C, **override})


def test_model_config_rejects_tiny_vocab():
  config = default_config()
  config.data.vocab_size = 4
  with pytest.raises(ConfigError, match=r"config\.data\.vocab_size"):
    model_config(config)


# -- parameter counts (Table 3) -------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _count(cfg: TransformerConfig) -> int:
  """Scalar parameters of the model, from shapes only (no initialisation is run)."""
  return count_params(param_shapes(cfg))


def _base_config() -> TransformerConfig:
  return model_config(load_file(ROOT / "configs" / "base.py"))


def test_base_parameter_count_is_65m():
  cfg = _base_config()
  assert (cfg.vocab_size, cfg.d_model, cfg.n_layers) == (37000, 512, 6)
  assert abs(_count(cfg) / 65e6 - 1.0) < 0.05, _count(cfg)
