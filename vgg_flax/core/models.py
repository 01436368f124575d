"""The VGG family as a Flax linen module.

The stage plans are those of the original PyTorch project (and of the paper's Table 1):
five stages of `conv 3x3 -> BatchNorm -> ReLU` blocks, each stage followed by a 2x2/2 max
pool, then an adaptive pool to `pool_size` and three dense layers.

Parameter names are stable (`stage{s}_{i}_conv`, `stage{s}_{i}_bn`, `fc1..fc3`) because
`vgg_flax.interop.torch_weights` maps PyTorch weights onto them.
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgg_flax.core import conv

# Convolutions per stage, keyed by the number of weight layers (convs + 3 dense).
STAGE_PLANS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
# Channels per stage, relative to `width` (64 in the paper).
STAGE_MULTIPLIERS = (1, 2, 4, 8, 8)
# Stages (0-based) whose last conv is 1x1 in the paper's configuration C.
CONV1X1_STAGES = (2, 3, 4)
# Five 2x2/2 pools need at least this many pixels per side.
MIN_IMAGE_SIZE = 32

# PyTorch's kaiming_normal_(mode='fan_out', nonlinearity='relu'): an untruncated normal.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
dense_kernel_init = nn.initializers.normal(stddev=0.01)


def stage_plan(depth: int, conv1x1: bool = False) -> list[list[int]]:
  """Kernel sizes of the convolutions of each stage.

  Args:
    depth: number of weight layers, one of 11, 13, 16, 19.
    conv1x1: the paper's configuration C (depth 16 only).

  Returns:
    Five lists of kernel sizes (3 or 1), one per stage.

  Raises:
    ValueError: for an unknown depth, or `conv1x1` with a depth other than 16.
  """
  if depth not in STAGE_PLANS:
    raise ValueError(f'model.depth={depth} is not a VGG depth; use one of '
                     f'{sorted(STAGE_PLANS)}.')
  if conv1x1 and depth != 16:
    raise ValueError(f'model.conv1x1=True is defined for depth 16 only (configuration C), '
                     f'not depth {depth}.')
  plan = [[3] * n for n in STAGE_PLANS[depth]]
  if conv1x1:
    for stage in CONV1X1_STAGES:
      plan[stage][-1] = 1
  return plan


def _adaptive_pool_axis(x: jax.Array, axis: int, out: int, reduce: str) -> jax.Array:
  """Adaptive pooling along one spatial axis (PyTorch's window rule)."""
  size = x.shape[axis]
  reducer = jnp.max if reduce == 'max' else jnp.mean
  if out == 1:
    return reducer(x, axis=axis, keepdims=True)
  if size % out == 0:
    # Equal windows: a reshape and one reduction is a single strided pool.
    shape = x.shape[:axis] + (out, size // out) + x.shape[axis + 1:]
    return reducer(x.reshape(shape), axis=axis + 1)
  pieces = []
  for i in range(out):
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)  # ceil((i + 1) * size / out)
    window = jax.lax.slice_in_dim(x, start, end, axis=axis)
    pieces.append(reducer(window, axis=axis, keepdims=True))
  return jnp.concatenate(pieces, axis=axis)


def adaptive_pool(x: jax.Array, output_size: int | Sequence[int],
                  reduce: str = 'max') -> jax.Array:
  """PyTorch `AdaptiveMaxPool2d` / `AdaptiveAvgPool2d` on NHWC input of any size.

  Output cell `i` pools input rows `floor(i*H/out) .. ceil((i+1)*H/out)` (and likewise for
  columns), so sizes that do not divide, and outputs larger than the input, match PyTorch.
  Max and mean over a rectangle are separable, so the two axes are pooled one after another.

  Args:
    x: array of shape (N, H, W, C).
    output_size: an int or (out_h, out_w).
    reduce: 'max' or 'avg'.

  Returns:
    Array of shape (N, out_h, out_w, C).
  """
  if reduce not in ('max', 'avg'):
    raise ValueError(f"reduce={reduce!r}; use 'max' or 'avg'.")
  if isinstance(output_size, int):
    output_size = (output_size, output_size)
  out_h, out_w = output_size
  if x.ndim != 4:
    raise ValueError(f'adaptive_pool expects NHWC input, got shape {x.shape}.')
  x = _adaptive_pool_axis(x, 1, out_h, reduce)
  return _adaptive_pool_axis(x, 2, out_w, reduce)


RUNNING_VARIANCES = ('unbiased', 'biased')


class BatchNorm(nn.Module):
  """PyTorch's `BatchNorm2d` on channels-last input, with Flax's variable names.

  Training normalises with the biased batch variance (as PyTorch and Flax do) but, like
  PyTorch, moves the running variance towards the *unbiased* one, `var * n / (n - 1)` with
  `n` the values per channel (batch x height x width). Flax's `nn.BatchNorm` uses the biased
  one there; the two differ by `1 / (n - 1)`, which matters at small spatial sizes (a 2x2
  map at batch 16 has n = 64, a 1.6% larger running variance). With
  `running_var='biased'` this module computes exactly what `nn.BatchNorm` does.

  The variables are `nn.BatchNorm`'s, so checkpoints and converted weights fit either:
  params `scale`, `bias` and batch_stats `mean`, `var`, all float32 of shape (features,).

  Attributes:
    use_running_average: normalise with the running statistics (evaluation) instead of the
      batch's (training, which also updates them).
    momentum: weight of the old running value (PyTorch's momentum 0.1 is 0.9 here).
    epsilon: added to the variance before the square root.
    running_var: 'unbiased' (PyTorch) or 'biased' (Flax) running-variance update.
    dtype: dtype of the output; the statistics are computed in float32.
  """
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  running_var: str = 'unbiased'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.running_var not in RUNNING_VARIANCES:
      raise ValueError(f'running_var={self.running_var!r}; use one of {RUNNING_VARIANCES}.')
    features = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean, var = _batch_statistics(x)
      if not self.is_initializing():
        count = math.prod(x.shape[:-1])
        running = var * (count / max(count - 1, 1)) if self.running_var == 'unbiased' else var
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * running
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    # The order of Flax's `nn.BatchNorm`: (x - mean) * (rsqrt(var + eps) * scale) + bias.
    y = (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype)


def _batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance in float32, in one pass (as `nn.BatchNorm`)."""
  x = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  mean, mean_of_squares = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)
  # E[x^2] - E[x]^2 can round below zero.
  return mean, jnp.maximum(0.0, mean_of_squares - jnp.square(mean))


class VGG(nn.Module):
  """VGG network with BatchNorm (as the original project) on NHWC images.

  Attributes:
    depth: weight layers: 11, 13, 16 or 19.
    conv1x1: configuration C (depth 16): the last conv of stages 3-5 is an unpadded 1x1.
    num_classes: outputs of the last dense layer.
    batch_norm: put BatchNorm between each conv and its ReLU.
    width: channels of the first stage; the stages have 1, 2, 4, 8, 8 times this.
    hidden_units: width of the two hidden dense layers.
    pool_size: output size of the adaptive pool before the head.
    pool_type: 'max' or 'avg' for the adaptive pool.
    dropout_rate: dropout after each hidden dense layer (0 = none, as the original).
    bn_running_var: how BatchNorm updates its running variance: 'unbiased' (PyTorch) or
      'biased' (Flax's `nn.BatchNorm`); see `BatchNorm`.
    dtype: computation dtype; parameters stay float32 and logits are float32.
    cpu_conv_grad: 'taps' computes the convs' weight gradients as per-tap matmuls on the CPU
      (`core.conv`), 'xla' leaves them to XLA; the parameters are the same either way.
  """
  depth: int
  conv1x1: bool = False
  num_classes: int = 200
  batch_norm: bool = True
  width: int = 64
  hidden_units: int = 4096
  pool_size: tuple[int, int] = (2, 2)
  pool_type: str = 'max'
  dropout_rate: float = 0.0
  bn_running_var: str = 'unbiased'
  dtype: Any = jnp.float32
  cpu_conv_grad: str = 'xla'

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Logits of shape (N, num_classes) for images of shape (N, H, W, C)."""
    self._check_input(images)
    x = images.astype(self.dtype)
    for stage, kernels in enumerate(stage_plan(self.depth, self.conv1x1)):
      features = self.width * STAGE_MULTIPLIERS[stage]
      for i, kernel in enumerate(kernels):
        x = self._conv_block(x, features, kernel, train, name=f'stage{stage + 1}_{i + 1}')
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = adaptive_pool(x, tuple(self.pool_size), self.pool_type)
    x = x.reshape((x.shape[0], -1))
    for i in (1, 2):
      x = self._dense(self.hidden_units, f'fc{i}')(x)
      x = nn.relu(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = self._dense(self.num_classes, 'fc3')(x)
    return x.astype(jnp.float32)

  def _conv_block(self, x, features, kernel, train, name):
    """Conv (with bias, as the original) -> [BatchNorm] -> ReLU."""
    padding = 'SAME' if kernel == 3 else 'VALID'
    x = nn.Conv(features, (kernel, kernel), padding=padding, kernel_init=conv_kernel_init,
                dtype=self.dtype, conv_general_dilated=conv.conv_function(self.cpu_conv_grad),
                name=f'{name}_conv')(x)
    if self.batch_norm:
      # PyTorch's BatchNorm2d momentum 0.1 is Flax's momentum 0.9.
      x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                    running_var=self.bn_running_var, dtype=self.dtype, name=f'{name}_bn')(x)
    return nn.relu(x)

  def _dense(self, features, name):
    return nn.Dense(features, kernel_init=dense_kernel_init, dtype=self.dtype, name=name)

  def _check_input(self, images):
    if images.ndim != 4:
      raise ValueError(f'VGG expects NHWC images, got shape {images.shape}.')
    height, width = images.shape[1:3]
    if min(height, width) < MIN_IMAGE_SIZE:
      raise ValueError(f'Images of {height}x{width} px are too small for five 2x2 pools; '
                       f'VGG needs at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} '
                       f'(set image_size >= {MIN_IMAGE_SIZE}).')


VGG11 = functools.partial(VGG, depth=11)
VGG13 = functools.partial(VGG, depth=13)
VGG16 = functools.partial(VGG, depth=16)
VGG16C = functools.partial(VGG, depth=16, conv1x1=True)
VGG19 = functools.partial(VGG, depth=19)
# (model.depth, model.conv1x1) -> the named variant `create_model` builds.
VARIANTS = {(11, False): VGG11, (13, False): VGG13, (16, False): VGG16, (16, True): VGG16C,
            (19, False): VGG19}


def create_model(model_config, *, num_classes: int, dtype: Any = jnp.float32,
                 cpu_conv_grad: str = 'xla') -> VGG:
  """Builds a VGG from a config's `model` section.

  Args:
    model_config: a mapping with the fields of `configs/default.py`'s `model` section.
    num_classes: outputs, from the dataset's metadata.
    dtype: computation dtype (a jnp dtype or its name).
    cpu_conv_grad: how the CPU computes the convs' weight gradients ('taps' or 'xla').

  Returns:
    The (unbound) VGG module.
  """
  depth, conv1x1 = int(model_config['depth']), bool(model_config['conv1x1'])
  stage_plan(depth, conv1x1)  # Validates early.
  variant = VARIANTS[(depth, conv1x1)]
  return variant(
      num_classes=num_classes,
      batch_norm=bool(model_config['batch_norm']),
      width=int(model_config['width']),
      hidden_units=int(model_config['hidden_units']),
      pool_size=tuple(int(s) for s in model_config['pool_size']),
      pool_type=str(model_config['pool_type']),
      dropout_rate=float(model_config['dropout_rate']),
      bn_running_var=str(model_config['bn_running_var']),
      dtype=jnp.dtype(dtype),
      cpu_conv_grad=str(cpu_conv_grad),
  )


def count_params(params) -> int:
  """Number of scalars in a parameter tree."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(params))
