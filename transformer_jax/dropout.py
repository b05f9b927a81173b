"""Dropout (Srivastava et al., 2014; paper Section 5.4) with masks drawn straight from XLA's
RngBitGenerator, choosing its algorithm.

Why not `flax.linen.Dropout`: it draws its masks through `jax.random.bernoulli`; with an 'rbg'
key that is XLA's RngBitGenerator with the backend's default algorithm, Philox on CPU, which
took 80 ms for the 8.9M mask elements of the "small" benchmark step on the 2-core CPU (over a
tenth of the step). ThreeFry through the same op took 21 ms (benchmarks/RESULTS.md). The masks
are the same kind of counter-based random bits, one 32-bit draw per element; only the algorithm
is chosen here (`algorithm`, config.model.dropout_algorithm).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ALGORITHMS = {
    "three_fry": lax.RandomAlgorithm.RNG_THREE_FRY,  # fastest on CPU
    "philox": lax.RandomAlgorithm.RNG_PHILOX,  # what 'default' gives on CPU
    "default": lax.RandomAlgorithm.RNG_DEFAULT,  # the backend's choice (TPU: its own)
}
DEFAULT_ALGORITHM = "three_fry"


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float, *,
              algorithm: str = DEFAULT_ALGORITHM) -> jax.Array:
  """Random dropout keep mask: True with probability 1 - rate (to within 2^-32).

  Args:
    key: a typed PRNG key of any impl (its key data seeds the generator) or a raw uint32 key.
    shape: shape of the mask.
    rate: drop probability in [0, 1).
    algorithm: RngBitGenerator algorithm, a key of ALGORITHMS.

  Returns:
    bool array of `shape`: one uint32 draw per element, kept where it is >= round(rate * 2^32).

  Raises:
    ValueError: `algorithm` is not a key of ALGORITHMS or `rate` is outside [0, 1).
  """
  if algorithm not in ALGORITHMS:
    raise ValueError(f"dropout algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
  words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  words = words.reshape(-1).astype(jnp.uint32)  # rbg keys hold 4 words, threefry keys 2
  words = jnp.concatenate([words, jnp.zeros(max(0, 4 - words.size), jnp.uint32)])[:4]
  _, draws = lax.rng_bit_generator(words, shape, jnp.uint32, algorithm=ALGORITHMS[algorithm])
  return draws >= jnp.uint32(min(round(rate * 2.0 ** 32), 2 ** 32 - 1))


def dropout(x: jax.Array, key: jax.Array, rate: float, *, algorithm: str = DEFAULT_ALGORITHM
            ) -> jax.Array:
  """Zeroes each element of x with probability `rate` and scales the rest by 1 / (1 - rate);
  same shape and dtype as x."""
  keep = keep_mask(key, x.shape, rate, algorithm=algorithm)
  return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - rate), x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """Dropout on activations of any shape; identity when `deterministic` or `rate` is 0.

  Attributes:
    rate: P_drop in [0, 1).
    algorithm: RngBitGenerator algorithm (a key of ALGORITHMS).

  Needs the 'dropout' PRNG stream (`rngs={'dropout': key}`) when not deterministic.
  """

  rate: float
  algorithm: str = DEFAULT_ALGORITHM

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.make_rng("dropout"), self.rate, algorithm=self.algorithm)
