"""x @ W for the model's projections, with a weight gradient that XLA:CPU hands to YNNPACK.

Autodiff writes the weight gradient of y = x W as dW = x^T dy, a dot that contracts the
*first* dimension of x [N, D_in]. XLA:CPU's YNNPACK back-end takes only dots whose left
operand contracts its last dimension (xla/backends/cpu/ynn_support.cc, IsDotSupportedByYnn),
so every weight gradient fell back to Eigen, which ran 10-25% slower on the 2-core CPU
(benchmarks/RESULTS.md). `linear` computes the same gradient from a materialised x^T [D_in, N]
held behind `lax.optimization_barrier`, so the dot is canonical and YNNPACK takes it. The
values are those of autodiff up to float summation order. On GPU and TPU the gradient is left
to autodiff's form (their matmul libraries take transposed operands as they are).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_vjp
def linear(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., D_in] @ w [D_in, D_out] -> [..., D_out], in the dtype of the operands."""
  return jnp.einsum("...I,IO->...O", x, w)


def _linear_fwd(x, w):
  return linear(x, w), (x, w)


def _linear_bwd(residuals, dy):
  x, w = residuals
  dx = jnp.einsum("...O,IO->...I", dy, w)
  x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # [N, D_in], [N, D_out]
  if jax.default_backend() == "cpu":
    dw = lax.optimization_barrier(x2.T) @ dy2  # canonical dot: YNNPACK takes it
  else:
    dw = jnp.einsum("NI,NO->IO", x2, dy2)
  return dx, dw.astype(w.dtype)


linear.defvjp(_linear_fwd, _linear_bwd)


def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                preferred_element_type=None) -> jax.Array:
  """`lax.dot_general` for `flax.linen.Dense(dot_general=...)`: its x @ kernel goes through
  `linear`; any other contraction, precision or output type goes to lax.dot_general."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  if (tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,) and rhs.ndim == 2
      and not lhs_batch and not rhs_batch and precision is None
      and preferred_element_type is None):
    return linear(lhs, rhs)
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         preferred_element_type=preferred_element_type)
