"""Convolution whose weight gradient is a few matmuls on the CPU (`cpu_conv_grad='taps'`).

XLA's CPU backend computes a convolution's weight gradient several times slower than its
forward pass or its input gradient (see README, "Training speed on the CPU"). For a stride-1
convolution the weight gradient of kernel tap `(i, j)` is one matmul,

  dw[i, j] = sum over n, h, w of x_padded[n, h + i, w + j, :]^T  dy[n, h, w, :],

so `tap_conv_general_dilated` keeps XLA's convolution for the forward pass and the input
gradient and computes the weight gradient as `kh * kw` such `dot_general`s on shifted views
of the padded input (a `jax.custom_vjp`). Parameters, shapes and results are those of
`lax.conv_general_dilated` (gradients equal to rounding), so checkpoints do not change.

It applies only where it helps and is exact: on the CPU backend (decided at trace time), for
NHWC/HWIO convolutions with unit strides and dilations, one feature group and non-negative
padding (every VGG conv, 3x3 SAME and 1x1 VALID, at any image size). Anything else, and every
convolution on GPU/TPU, is plain `lax.conv_general_dilated`.
"""

import functools
from typing import Any, Callable, Sequence

import jax
from jax import lax
import jax.numpy as jnp

CONV_GRADS = ('taps', 'xla')

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _weight_grad_by_taps(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int],
                         pads: Sequence[tuple[int, int]]) -> jax.Array:
  """Weight gradient of a stride-1 NHWC conv: one matmul per kernel tap, f32 accumulation."""
  kh, kw = kernel_shape[:2]
  out_h, out_w = dy.shape[1:3]
  x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  contract = (((0, 1, 2), (0, 1, 2)), ((), ()))  # Over batch x height x width.
  taps = [lax.dot_general(x[:, i:i + out_h, j:j + out_w, :], dy, contract,
                          preferred_element_type=jnp.float32)
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tap_conv(x: jax.Array, kernel: jax.Array, pads: tuple[tuple[int, int], ...]) -> jax.Array:
  return _xla_conv(x, kernel, pads)


def _xla_conv(x, kernel, pads):
  return lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=_NHWC)


def _tap_conv_fwd(x, kernel, pads):
  return _xla_conv(x, kernel, pads), (x, kernel)


def _tap_conv_bwd(pads, residuals, dy):
  x, kernel = residuals
  # The input gradient stays XLA's transposed convolution: taps did not make it faster.
  _, input_grad = jax.vjp(lambda x_: _xla_conv(x_, kernel, pads), x)
  dw = _weight_grad_by_taps(x, dy, kernel.shape, pads)
  return input_grad(dy)[0], dw.astype(kernel.dtype)


_tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def _layout(dimension_numbers) -> tuple[str, str, str] | None:
  """('NHWC', 'HWIO', 'NHWC') style names, or None when they cannot be read."""
  if dimension_numbers is None:
    return None
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    # Flax passes the numeric form; NHWC/HWIO is lhs (0, 3, 1, 2), rhs (3, 2, 0, 1).
    nhwc = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _NHWC)
    return _NHWC if tuple(dimension_numbers) == tuple(nhwc) else None
  return tuple(dimension_numbers)


def tap_conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                             padding: str | Sequence[tuple[int, int]],
                             lhs_dilation: Sequence[int] | None = None,
                             rhs_dilation: Sequence[int] | None = None,
                             dimension_numbers: Any = None, feature_group_count: int = 1,
                             batch_group_count: int = 1, precision: Any = None,
                             preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated` with a per-tap matmul weight gradient on the CPU.

  Same signature and result as `lax.conv_general_dilated`, so it can be given to
  `flax.linen.Conv(conv_general_dilated=...)`. The custom gradient is used only on the CPU
  backend for 2-D NHWC/HWIO convolutions with unit strides and dilations, one group, no
  precision or output-type override and non-negative padding; otherwise this is
  `lax.conv_general_dilated` itself.

  Returns:
    The convolution's output.
  """
  args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, batch_group_count, precision, preferred_element_type)
  if jax.default_backend() != 'cpu' or lhs.ndim != 4 or _layout(dimension_numbers) != _NHWC:
    return lax.conv_general_dilated(*args)
  unit = lambda v: v is None or all(s == 1 for s in v)
  if not (unit(window_strides) and unit(lhs_dilation) and unit(rhs_dilation)
          and feature_group_count == 1 and batch_group_count == 1 and precision is None
          and preferred_element_type is None):
    return lax.conv_general_dilated(*args)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if any(p < 0 for pair in pads for p in pair):
    return lax.conv_general_dilated(*args)
  return _tap_conv(lhs, rhs, pads)


def conv_function(cpu_conv_grad: str) -> Callable[..., jax.Array]:
  """The `conv_general_dilated` for `flax.linen.Conv` that `config.cpu_conv_grad` names.

  Args:
    cpu_conv_grad: 'taps' (weight gradient as per-tap matmuls on the CPU) or 'xla'.

  Returns:
    `tap_conv_general_dilated` or `lax.conv_general_dilated`.

  Raises:
    ValueError: for another name.
  """
  if cpu_conv_grad not in CONV_GRADS:
    raise ValueError(f'cpu_conv_grad={cpu_conv_grad!r} is not one of '
                     f'{", ".join(map(repr, CONV_GRADS))}.')
  return tap_conv_general_dilated if cpu_conv_grad == 'taps' else lax.conv_general_dilated
