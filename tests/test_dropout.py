"""Tests for transformer_jax.dropout: the masks drop the configured fraction, scale the rest so
the expectation is kept, differ between keys and not between calls with one key, and every
algorithm and key impl works. One [64, 128, 128] shape (1M draws) is reused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax import dropout as dropout_lib

SHAPE = (64, 128, 128)
N = int(np.prod(SHAPE))


@pytest.mark.parametrize("algorithm", sorted(dropout_lib.ALGORITHMS))
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_mask_drops_rate_of_elements(algorithm, rate):
  keep = dropout_lib.keep_mask(jax.random.key(0, impl="rbg"), SHAPE, rate, algorithm=algorithm)
  assert keep.shape == SHAPE and keep.dtype == jnp.bool_
  dropped = 1.0 - float(jnp.mean(keep))
  # Binomial standard deviation sqrt(rate (1 - rate) / N) is below 5e-4 here: 6 sigma.
  assert abs(dropped - rate) < 6 * np.sqrt(rate * (1 - rate) / N)


def test_masks_depend_on_the_key_only():
  key, other = jax.random.key(1, impl="rbg"), jax.random.key(2, impl="rbg")
  a = np.asarray(dropout_lib.keep_mask(key, SHAPE, 0.1))
  np.testing.assert_array_equal(a, np.asarray(dropout_lib.keep_mask(key, SHAPE, 0.1)))
  b = np.asarray(dropout_lib.keep_mask(other, SHAPE, 0.1))
  assert 0.15 < np.mean(a != b) < 0.21  # independent masks differ in 2 * 0.1 * 0.9 = 18%
  # Neighbouring elements are not correlated (a broken counter would repeat patterns).
  assert abs(np.mean(a[..., 1:] & a[..., :-1]) - 0.81) < 3e-3


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg", "threefry2x32"])
def test_every_key_impl_seeds_the_masks(impl):
  keep = dropout_lib.keep_mask(jax.random.key(3, impl=impl), SHAPE, 0.1)
  assert abs(float(jnp.mean(keep)) - 0.9) < 3e-3


def test_dropout_keeps_the_expectation_and_zeroes_the_rest():
  x = jnp.full(SHAPE, 2.0, jnp.float32)
  y = np.asarray(dropout_lib.dropout(x, jax.random.key(4, impl="rbg"), 0.1))
  assert y.dtype == np.float32
  assert set(np.unique(y)) == {0.0, np.float32(2.0 / 0.9)}
  assert abs(y.mean() - 2.0) < 6 * 2.0 / 0.9 * np.sqrt(0.1 * 0.9 / N)


def test_module_is_identity_when_deterministic_or_rate_zero():
  x = jnp.arange(12.0).reshape(3, 4)
  module = dropout_lib.Dropout(0.5)
  np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
  zero = dropout_lib.Dropout(0.0).apply({}, x, deterministic=False)
  np.testing.assert_array_equal(zero, x)
  dropped = module.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
  assert np.any(np.asarray(dropped) == 0.0) and np.any(np.asarray(dropped) == 2 * x)


@pytest.mark.parametrize("kwargs,message", [
    (dict(rate=0.1, algorithm="mt19937"), "dropout algorithm"),
    (dict(rate=1.0), r"dropout rate must be in \[0, 1\)"),
])
def test_bad_arguments_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dropout_lib.keep_mask(jax.random.key(0), SHAPE, **kwargs)
