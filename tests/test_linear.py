"""Tests for transformer_jax.linear: values and gradients equal those of a plain einsum (with
leading batch dimensions and in bfloat16), Dense routes through it, and on CPU the weight
gradient really is a dot YNNPACK takes (no Eigen 'dot' left in the compiled HLO)."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax import linear as linear_lib

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 5, 16)).astype(np.float32)  # [B, T, D_in]
W = RNG.standard_normal((16, 24)).astype(np.float32)  # [D_in, D_out]
DY = RNG.standard_normal((3, 5, 24)).astype(np.float32)


def _grads(fn, x, w):
  return jax.grad(lambda x, w: jnp.sum(fn(x, w) * DY), argnums=(0, 1))(x, w)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_values_and_gradients_match_einsum(dtype, tol):
  x, w = jnp.asarray(X, dtype), jnp.asarray(W, dtype)
  plain = lambda x, w: jnp.einsum("BTI,IO->BTO", x, w)
  np.testing.assert_allclose(np.float32(linear_lib.linear(x, w)), np.float32(plain(x, w)),
                             rtol=tol, atol=tol)
  for got, want in zip(_grads(linear_lib.linear, x, w), _grads(plain, x, w)):
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=tol, atol=tol * 10)


def test_dense_uses_linear_and_keeps_its_parameters():
  dense = nn.Dense(24, dot_general=linear_lib.dot_general)
  params = dense.init(jax.random.PRNGKey(0), X)
  assert jax.tree_util.tree_map(jnp.shape, params) == {
      "params": {"kernel": (16, 24), "bias": (24,)}}
  jaxpr = str(jax.make_jaxpr(lambda p: dense.apply(p, X))(params))
  assert "custom_vjp_call" in jaxpr
  plain = nn.Dense(24).apply(params, X)
  np.testing.assert_allclose(dense.apply(params, X), plain, rtol=1e-5, atol=1e-5)


def test_other_contractions_fall_back_to_lax():
  a, b = jnp.asarray(X[0]), jnp.asarray(X[1])  # [5, 16] x [5, 16], contracting dimension 0
  got = linear_lib.dot_general(a, b, (((0,), (0,)), ((), ())))
  np.testing.assert_allclose(got, np.asarray(a).T @ np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="YNNPACK is XLA:CPU's")
def test_weight_gradient_is_a_canonical_dot_on_cpu():
  x = jnp.asarray(RNG.standard_normal((64, 32)), jnp.float32)
  w = jnp.asarray(RNG.standard_normal((32, 48)), jnp.float32)

  def transposed_lhs_dots(fn) -> int:  # dots whose left operand contracts its first dimension
    hlo = jax.jit(jax.grad(lambda w: jnp.sum(jnp.tanh(fn(x, w))))).lower(w).compile().as_text()
    return len(re.findall(r" dot\(.*lhs_contracting_dims=\{0\}", hlo))

  assert transposed_lhs_dots(lambda x, w: x @ w) == 1  # autodiff's x^T dy, left to Eigen
  assert transposed_lhs_dots(linear_lib.linear) == 0
