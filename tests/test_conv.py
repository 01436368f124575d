"""The per-tap weight gradient (`cpu_conv_grad='taps'`) equals XLA's: layers, steps, resume."""

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from configs import default
from vgg_flax.workdir import config as configuration
from vgg_flax.core import conv
from vgg_flax.core import factory
from vgg_flax.core import sharding
from vgg_flax import train

NHWC = ('NHWC', 'HWIO', 'NHWC')


def conv_vjp(conv_fn, x, kernel, dy, padding, strides=(1, 1)):
  """Input and weight gradients of `conv_fn` for the output cotangent `dy` (jitted)."""
  def grads(x, kernel, dy):
    _, vjp = jax.vjp(lambda a, b: conv_fn(a, b, strides, padding, dimension_numbers=NHWC),
                     x, kernel)
    return vjp(dy)
  return jax.jit(grads)(x, kernel, dy)


def random_case(batch, size, kernel, c_in, c_out, padding, dtype, strides=(1, 1)):
  keys = jax.random.split(jax.random.key(size * 100 + c_in), 3)
  x = jax.random.normal(keys[0], (batch, size, size, c_in)).astype(dtype)
  w = jax.random.normal(keys[1], (kernel, kernel, c_in, c_out)).astype(dtype)
  out_shape = jax.eval_shape(
      lambda: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)).shape
  dy = jax.random.normal(keys[2], out_shape).astype(dtype)
  return x, w, dy


def assert_close(actual, expected, rtol):
  """Elementwise within `rtol` of the value, or of the largest value for entries near 0."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def assert_norm_close(actual, expected, rtol=1e-5):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  assert np.linalg.norm(actual - expected) <= rtol * np.linalg.norm(expected)


# (batch, size, kernel, c_in, c_out, padding): VGG's 3x3 SAME and 1x1 VALID, odd and even
# sizes, the 3-channel first layer, a 2x2 feature map, more inputs than outputs.
CASES = [
    (4, 8, 3, 3, 8, 'SAME'),
    (2, 7, 3, 16, 8, 'SAME'),
    (3, 2, 3, 8, 32, 'SAME'),
    (2, 5, 1, 16, 4, 'VALID'),
    (2, 6, 1, 8, 24, 'VALID'),
    (2, 9, 3, 4, 4, ((2, 0), (1, 1))),
]


@pytest.mark.parametrize('case', CASES, ids=lambda c: f'{c[1]}px_{c[2]}x{c[2]}_{c[3]}to{c[4]}')
def test_float32_gradients_equal_xla(case):
  x, w, dy = random_case(*case, dtype=jnp.float32)
  dx_xla, dw_xla = conv_vjp(lax.conv_general_dilated, x, w, dy, case[-1])
  dx_taps, dw_taps = conv_vjp(conv.tap_conv_general_dilated, x, w, dy, case[-1])
  assert dw_taps.dtype == jnp.float32
  assert_close(dw_taps, dw_xla, rtol=1e-5)
  assert_close(dx_taps, dx_xla, rtol=1e-5)
  y_taps = conv.tap_conv_general_dilated(x, w, (1, 1), case[-1], dimension_numbers=NHWC)
  np.testing.assert_array_equal(
      y_taps, lax.conv_general_dilated(x, w, (1, 1), case[-1], dimension_numbers=NHWC))


@pytest.mark.parametrize('case', CASES[:4], ids=lambda c: f'{c[1]}px_{c[2]}x{c[2]}_{c[3]}to{c[4]}')
def test_bfloat16_gradients_are_float32_sums_rounded_once(case):
  """bf16 operands: taps accumulate in f32 and round once, so each weight-gradient entry is
  within one bf16 rounding (2**-8 relative) of the exact sum of the same bf16 products, and
  within two roundings of XLA's bf16 result; the input gradient is XLA's own."""
  x, w, dy = random_case(*case, dtype=jnp.bfloat16)
  _, dw_exact = conv_vjp(lax.conv_general_dilated, *(a.astype(jnp.float32) for a in (x, w, dy)),
                         case[-1])
  dx_xla, dw_xla = conv_vjp(lax.conv_general_dilated, x, w, dy, case[-1])
  dx_taps, dw_taps = conv_vjp(conv.tap_conv_general_dilated, x, w, dy, case[-1])
  assert dw_taps.dtype == jnp.bfloat16 and dx_taps.dtype == jnp.bfloat16
  assert_close(dw_taps, dw_exact, rtol=2.0**-8)
  assert_close(dw_taps, dw_xla, rtol=2.0**-7)
  assert_close(dx_taps, dx_xla, rtol=2.0**-8)


def uses_custom_vjp(conv_fn, strides=(1, 1), padding='SAME'):
  x, w, _ = random_case(2, 8, 3, 4, 4, padding, jnp.float32, strides)
  jaxpr = jax.make_jaxpr(
      lambda a, b: conv_fn(a, b, strides, padding, dimension_numbers=NHWC))(x, w)
  return 'custom_vjp' in str(jaxpr)


def test_taps_only_where_exact_and_on_the_cpu(monkeypatch):
  assert uses_custom_vjp(conv.tap_conv_general_dilated)
  assert not uses_custom_vjp(conv.tap_conv_general_dilated, strides=(2, 2))  # Left to XLA.
  assert not uses_custom_vjp(lax.conv_general_dilated)
  x, w, dy = random_case(2, 8, 3, 4, 4, 'SAME', jnp.float32, (2, 2))
  for a, b in zip(conv_vjp(conv.tap_conv_general_dilated, x, w, dy, 'SAME', (2, 2)),
                  conv_vjp(lax.conv_general_dilated, x, w, dy, 'SAME', (2, 2))):
    np.testing.assert_array_equal(a, b)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert not uses_custom_vjp(conv.tap_conv_general_dilated)  # XLA's conv on GPU/TPU.


def test_switch_names_are_checked():
  assert conv.conv_function('taps') is conv.tap_conv_general_dilated
  assert conv.conv_function('xla') is lax.conv_general_dilated
  with pytest.raises(ValueError, match="cpu_conv_grad='tap' is not one of 'taps', 'xla'"):
    conv.conv_function('tap')
  config = default.get_config()
  config.cpu_conv_grad = 'fast'
  with pytest.raises(configuration.ConfigError) as error:
    configuration.validate_config(config)
  assert str(error.value) == "cpu_conv_grad='fast' is not one of 'taps', 'xla'."
  old = configuration.config_to_dict(config)
  del old['cpu_conv_grad']  # A config.json from before the switch still validates.
  configuration.validate_config(configuration.migrate(old))


def one_step(cpu_conv_grad, depth, conv1x1):
  """Parameters, batch statistics and Adam state after one train step on a fixed batch."""
  config = default.get_config()
  config.image_size, config.batch_size = 32, 8
  config.model.update(depth=depth, conv1x1=conv1x1, width=4, hidden_units=16)
  config.cpu_conv_grad = cpu_conv_grad
  compiled, state = factory.create(config, num_classes=5, steps_per_epoch=10)
  initial = jax.tree.map(np.asarray, state.params)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'label': rng.integers(0, 5, (8,)).astype(np.int32)}
  state, _ = compiled.train_step(state, sharding.to_global_batch(
      batch, sharding.data_sharding(compiled.mesh)))
  return initial, jax.tree.map(np.asarray, (state.params, state.batch_stats, state.opt_state))


def test_one_train_step_gives_the_same_parameters():
  # Configuration C: 3x3 SAME and 1x1 VALID convs in one model.
  initial_xla, after_xla = one_step('xla', depth=16, conv1x1=True)
  initial_taps, after_taps = one_step('taps', depth=16, conv1x1=True)
  # Same names, shapes and initial values: checkpoints are interchangeable.
  jax.tree.map(np.testing.assert_array_equal, initial_taps, initial_xla)
  assert initial_taps['stage1_1_conv']['kernel'].shape == (3, 3, 3, 4)
  assert initial_taps['stage3_3_conv']['kernel'].shape == (1, 1, 16, 16)
  # To 1e-5 of each array's norm: single entries of near-cancelling gradient sums (the
  # convs' biases before BatchNorm, ~1e-13) differ more in relative terms, as any change of
  # summation order makes them.
  jax.tree.map(assert_norm_close, after_taps, after_xla)


@pytest.mark.slow  # Three short runs end to end (train, evaluate, checkpoint, resume).
def test_resume_with_taps_is_bitwise(data_config, tmp_path, monkeypatch):
  traced = []
  weight_grad = conv._weight_grad_by_taps  # pylint: disable=protected-access
  monkeypatch.setattr(conv, '_weight_grad_by_taps', lambda *a: traced.append(1) or weight_grad(*a))
  data_config.cpu_conv_grad = 'taps'
  data_config.steps_per_epoch = 2
  reference = train.train_and_evaluate(data_config, str(tmp_path / 'whole'))
  data_config.num_epochs = 1
  train.train_and_evaluate(data_config, str(tmp_path / 'resumed'))
  data_config.num_epochs = 2
  resumed = train.train_and_evaluate(data_config, str(tmp_path / 'resumed'))
  assert int(resumed.step) == int(reference.step) == 4
  assert len(traced) >= 8  # The 8 convs of VGG-11 took their weight gradients by taps.
  trees = [jax.tree.map(np.asarray, (s.params, s.batch_stats, s.opt_state))
           for s in (reference, resumed)]
  jax.tree.map(np.testing.assert_array_equal, *trees)
