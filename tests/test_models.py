"""The VGG family: sizes, shapes, adaptive pooling, BatchNorm, dropout and dtypes."""

import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgg_flax.core import models

# Convs per stage and stage widths, written out from the paper's Table 1 so that the
# expected counts below do not reuse the module's own tables.
PLANS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)
TINY = {'width': 8, 'hidden_units': 16}


def layer_plan(depth, conv1x1=False, width=64):
  """(kernel, cin, cout) of every conv, in order."""
  convs, cin = [], 3
  for stage, n in enumerate(PLANS[depth]):
    cout = WIDTHS[stage] * width // 64
    for i in range(n):
      kernel = 1 if conv1x1 and stage >= 2 and i == n - 1 else 3
      convs.append((kernel, cin, cout))
      cin = cout
  return convs


def expected_counts(depth, *, conv1x1=False, batch_norm, pool, num_classes, hidden=4096,
                    width=64):
  """(params, batch_stats) scalar counts, by hand: convs, BatchNorms, three dense layers."""
  convs = layer_plan(depth, conv1x1, width)
  params = sum(k * k * cin * cout + cout for k, cin, cout in convs)
  stats = 0
  if batch_norm:
    params += sum(2 * cout for _, _, cout in convs)  # scale, bias
    stats = sum(2 * cout for _, _, cout in convs)  # mean, var
  flat = pool[0] * pool[1] * convs[-1][2]
  for fan_in, fan_out in ((flat, hidden), (hidden, hidden), (hidden, num_classes)):
    params += fan_in * fan_out + fan_out
  return params, stats


def variable_shapes(model, size, batch=1):
  images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def quick_init(model, images, seed=0):
  """Variables of the model's shapes, drawn with numpy.

  `model.init` compiles one random op per parameter shape, seconds on two CPUs; tests that
  are not about initialisation take this instead (scaled like He init, so activations stay
  O(1)).
  """
  rng = np.random.default_rng(seed)
  shapes = variable_shapes(model, images.shape[1], batch=images.shape[0])

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.normal(size=leaf.shape) * math.sqrt(2 / fan_in), jnp.float32)
    fill = 1.0 if name in ('scale', 'var') else 0.0
    return jnp.full(leaf.shape, fill, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def jitted(method, **kwargs):
  """`method` with `kwargs`, compiled as one program: run eagerly, each op compiles on its
  own (a tiny VGG's forward pass took 3.4 s cold against 0.4 s jitted on two CPUs)."""
  return jax.jit(functools.partial(method, **kwargs))


def count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('depth,conv1x1,millions', [
    (11, False, 133), (13, False, 133), (16, True, 134), (16, False, 138), (19, False, 144)])
def test_paper_table2_parameter_counts(depth, conv1x1, millions):
  model = models.VGG(depth=depth, conv1x1=conv1x1, num_classes=1000, batch_norm=False,
                     pool_size=(7, 7))
  variables = variable_shapes(model, 224)
  assert set(variables) == {'params'}
  params = count(variables['params'])
  assert round(params / 1e6) == millions
  assert params == expected_counts(depth, conv1x1=conv1x1, batch_norm=False, pool=(7, 7),
                                   num_classes=1000)[0]


@pytest.mark.parametrize('depth,conv1x1', [(11, False), (13, False), (16, False),
                                           (16, True), (19, False)])
def test_seed_head_parameter_counts(depth, conv1x1):
  model = models.VGG(depth=depth, conv1x1=conv1x1, num_classes=200)
  variables = variable_shapes(model, 64)
  want_params, want_stats = expected_counts(depth, conv1x1=conv1x1, batch_norm=True,
                                            pool=(2, 2), num_classes=200)
  assert count(variables['params']) == want_params
  assert count(variables['batch_stats']) == want_stats
  assert models.count_params(variables['params']) == want_params


@pytest.mark.parametrize('size', [32, 57, 64, 224])
@pytest.mark.parametrize('depth,conv1x1', [(11, False), (16, True)])
def test_output_shapes(size, depth, conv1x1):
  model = models.VGG(depth=depth, conv1x1=conv1x1, num_classes=7, **TINY)
  images = jax.ShapeDtypeStruct((3, size, size, 3), jnp.float32)
  variables = variable_shapes(model, size, batch=3)
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  assert logits.shape == (3, 7)
  assert logits.dtype == jnp.float32


def test_output_shape_of_a_real_forward_pass():
  model = models.VGG(depth=11, num_classes=5, **TINY)
  images = jnp.ones((2, 57, 40, 3))
  variables = jitted(model.init, train=False)(jax.random.key(0), images)
  logits = jitted(model.apply, train=False)(variables, images)
  assert logits.shape == (2, 5)
  assert np.all(np.isfinite(logits))
  # The original's init: Kaiming normal (fan_out) convs, N(0, 0.01) dense, zero biases.
  params = variables['params']
  kernel = params['stage5_2_conv']['kernel']  # 3x3x64x64: enough draws for a std.
  np.testing.assert_allclose(np.std(kernel), math.sqrt(2 / (9 * 64)), rtol=0.05)
  np.testing.assert_allclose(np.std(params['fc2']['kernel']), 0.01, rtol=0.2)
  assert all(not np.any(leaf) for path, leaf in
             jax.tree_util.tree_leaves_with_path(params) if path[-1].key == 'bias')


@pytest.mark.parametrize('shape', [(1, 31, 64, 3), (1, 64, 16, 3)])
def test_small_images_raise(shape):
  model = models.VGG(depth=11, **TINY)
  with pytest.raises(ValueError, match='32'):
    model.init(jax.random.key(0), jnp.zeros(shape), train=False)


def test_conv1x1_needs_depth_16():
  with pytest.raises(ValueError, match='depth 16'):
    variable_shapes(models.VGG(depth=11, conv1x1=True, **TINY), 32)


@pytest.mark.parametrize('depth', [10, 12, 18])
def test_unknown_depth_raises(depth):
  with pytest.raises(ValueError, match=f'depth={depth}'):
    variable_shapes(models.VGG(depth=depth, **TINY), 32)


def test_named_variants():
  assert models.VGG11().depth == 11 and models.VGG13().depth == 13
  assert models.VGG16().depth == 16 and not models.VGG16().conv1x1
  assert models.VGG16C().depth == 16 and models.VGG16C().conv1x1
  assert models.VGG19().depth == 19


POOL_CASES = [((7, 7), (2, 2)), ((7, 7), (3, 3)), ((5, 5), (7, 7)), ((2, 2), (2, 2)),
              ((13, 13), (1, 1)), ((64, 64), (7, 7)), ((9, 9), (4, 4)), ((7, 5), (3, 2)),
              ((8, 6), (4, 3)), ((3, 10), (5, 4))]


@pytest.mark.parametrize('reduce', ['max', 'avg'])
@pytest.mark.parametrize('in_size,out_size', POOL_CASES)
def test_adaptive_pool_matches_torch(in_size, out_size, reduce):
  import torch  # pylint: disable=g-import-not-at-top  # Needed only here.
  x = np.random.default_rng(0).normal(size=(2, 3, *in_size)).astype(np.float32)  # NCHW
  torch_pool = {'max': torch.nn.functional.adaptive_max_pool2d,
                'avg': torch.nn.functional.adaptive_avg_pool2d}[reduce]
  want = torch_pool(torch.from_numpy(x), out_size).numpy().transpose(0, 2, 3, 1)
  got = models.adaptive_pool(jnp.asarray(x.transpose(0, 2, 3, 1)), out_size, reduce)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_adaptive_pool_int_output_size_and_bad_reduce():
  x = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
  assert models.adaptive_pool(x, 3).shape == (2, 3, 3, 1)
  with pytest.raises(ValueError, match='reduce'):
    models.adaptive_pool(x, 3, 'sum')


@pytest.fixture(scope='module')
def tiny_bn_model():
  model = models.VGG(depth=11, num_classes=4, width=4, hidden_units=8)
  images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  return model, quick_init(model, images), images


def test_batch_norm_train_updates_stats(tiny_bn_model):
  model, variables, images = tiny_bn_model
  _, updates = jitted(model.apply, train=True, mutable=['batch_stats'])(variables, images)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         variables['batch_stats'], updates['batch_stats'])
  assert all(jax.tree.leaves(changed))


def test_batch_norm_eval_leaves_stats_alone(tiny_bn_model):
  model, variables, images = tiny_bn_model
  _, updates = jitted(model.apply, train=False, mutable=['batch_stats'])(variables, images)
  jax.tree.map(np.testing.assert_array_equal, variables['batch_stats'],
               updates['batch_stats'])


def test_dropout_uses_its_rng_in_training_only():
  model = models.VGG(depth=11, num_classes=4, width=4, hidden_units=64, dropout_rate=0.5)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = quick_init(model, images)

  train_apply = jitted(model.apply, train=True, mutable=['batch_stats'])
  eval_apply = jitted(model.apply, train=False)

  def train_logits(seed):
    logits, _ = train_apply(variables, images, rngs={'dropout': jax.random.key(seed)})
    return logits

  assert not np.allclose(train_logits(0), train_logits(1))
  np.testing.assert_array_equal(train_logits(0), train_logits(0))
  with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
    train_apply(variables, images)
  np.testing.assert_array_equal(eval_apply(variables, images), eval_apply(variables, images))


def test_bfloat16_computes_in_bf16_keeps_float32_params_and_logits():
  model = models.VGG(depth=11, num_classes=4, dtype=jnp.bfloat16, **TINY)
  images = jnp.ones((2, 32, 32, 3))
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  variables = quick_init(model, images)
  logits, state = jitted(model.apply, train=False, capture_intermediates=True,
                         mutable=['intermediates'])(variables, images)
  assert logits.dtype == jnp.float32
  conv_out = state['intermediates']['stage1_1_conv']['__call__'][0]
  assert conv_out.dtype == jnp.bfloat16


def test_conv1x1_kernels_and_feature_map_sizes():
  model = models.VGG(depth=16, conv1x1=True, **TINY)
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  variables = variable_shapes(model, 64)
  params = variables['params']
  for stage, cin, cout in ((3, 32, 32), (4, 64, 64), (5, 64, 64)):
    assert params[f'stage{stage}_3_conv']['kernel'].shape == (1, 1, cin, cout)
    assert params[f'stage{stage}_2_conv']['kernel'].shape[:2] == (3, 3)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                               mutable=['intermediates']), variables, images)
  outputs = state['intermediates']
  for stage, side in ((3, 16), (4, 8), (5, 4)):
    for i in (1, 2, 3):
      # The original's padding=1 on a 1x1 conv would grow side by 2 here.
      assert outputs[f'stage{stage}_{i}_conv']['__call__'][0].shape[1:3] == (side, side)


def test_create_model_from_default_config():
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  model = models.create_model(config.model, num_classes=200, dtype=config.dtype)
  assert model == models.VGG(depth=16, num_classes=200)

  config.model.update(depth=16, conv1x1=True, batch_norm=False, width=8, hidden_units=16,
                      pool_size=(3, 3), pool_type='avg', dropout_rate=0.25)
  model = models.create_model(config.model, num_classes=10, dtype='bfloat16')
  assert model == models.VGG(depth=16, conv1x1=True, num_classes=10, batch_norm=False,
                             width=8, hidden_units=16, pool_size=(3, 3), pool_type='avg',
                             dropout_rate=0.25, dtype=jnp.bfloat16)
  assert models.count_params(variable_shapes(model, 32)['params']) == expected_counts(
      16, conv1x1=True, batch_norm=False, pool=(3, 3), num_classes=10, hidden=16,
      width=8)[0]


@pytest.mark.parametrize('name,depth,conv1x1,variant', [
    ('vgg11', 11, False, 'VGG11'), ('vgg13', 13, False, 'VGG13'), ('vgg16', 16, False, 'VGG16'),
    ('vgg16_c11', 16, True, 'VGG16C'), ('vgg19', 19, False, 'VGG19')])
def test_config_files_build_their_named_variant(name, depth, conv1x1, variant):
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config()
  assert (config.model.depth, config.model.conv1x1) == (depth, conv1x1)
  assert models.VARIANTS[(depth, conv1x1)] is getattr(models, variant)
  assert models.create_model(config.model, num_classes=200) == getattr(models, variant)(
      num_classes=200)


def test_create_model_rejects_bad_configs():
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.update(depth=11, conv1x1=True)
  with pytest.raises(ValueError, match='depth 16'):
    models.create_model(config.model, num_classes=200)
