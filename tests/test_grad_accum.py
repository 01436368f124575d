"""Gradient accumulation: k micro-batches train like one big batch; BatchNorm as documented."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from vgg_flax.workdir import config as configuration
from vgg_flax.core import factory
from vgg_flax.core import models
from vgg_flax.core import preprocess
from vgg_flax.core import sharding
from vgg_flax.core import steps

BATCH = 16


def small_config(batch_norm=True, **overrides):
  config = default.get_config()
  config.image_size, config.batch_size = 32, BATCH
  config.model.update(depth=11, width=8, hidden_units=32, batch_norm=batch_norm)
  config.augment.flip = True
  config.update(overrides)
  return config


def random_batch(seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8),
          'label': rng.integers(0, 10, BATCH).astype(np.int32)}


def run_steps(config, num_steps=2):
  """The state and per-step metrics after `num_steps` jitted steps on fixed batches."""
  compiled, state = factory.create(config, num_classes=10, steps_per_epoch=10)
  computed = []
  for index in range(num_steps):
    batch = sharding.to_global_batch(random_batch(index), sharding.data_sharding(compiled.mesh))
    state, step_metrics = compiled.train_step(state, batch)
    computed.append({k: float(v) for k, v in step_metrics.compute().items()})
  return state, computed


def test_micro_batches_train_exactly_like_one_big_batch():
  """Without BatchNorm, 4 micro-batches of 4 give the update of one batch of 16 (fp32).

  SGD with momentum: its update is linear in the gradient, so the parameters show any
  difference in the accumulated gradients (Adam's normalisation would hide scale errors).
  """
  recipe = dict(batch_norm=False, optimizer='sgd', learning_rate=0.05)
  initial, _ = run_steps(small_config(**recipe), num_steps=0)
  big_state, big_metrics = run_steps(small_config(**recipe))
  accum_state, accum_metrics = run_steps(small_config(grad_accum_steps=4, **recipe))
  assert int(accum_state.step) == int(big_state.step) == 2
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), big_state.params,
                       initial.params)
  assert max(jax.tree.leaves(moved)) > 1e-2  # What is compared below has trained.
  for big, accum in zip(jax.tree.leaves(big_state.params), jax.tree.leaves(accum_state.params)):
    np.testing.assert_allclose(accum, big, rtol=0, atol=1e-6)
  for big, accum in zip(big_metrics, accum_metrics):
    assert accum.keys() == big.keys()
    for key in big:
      np.testing.assert_allclose(accum[key], big[key], rtol=0, atol=1e-6, err_msg=key)


def test_batch_norm_statistics_are_the_mean_of_the_micro_batches():
  """Each micro-batch is normalised by itself; the running averages move once, by the mean."""
  config = small_config(grad_accum_steps=2)
  config.augment.flip = False  # Deterministic inputs, so the expectation can be rebuilt here.
  initial, _ = run_steps(config, num_steps=0)
  state, _ = run_steps(config, num_steps=1)
  model = models.create_model(config.model, num_classes=10, dtype=config.dtype)
  batch_stats_of = jax.jit(lambda variables, images: model.apply(
      variables, images, train=True, mutable=['batch_stats'])[1]['batch_stats'])
  images = preprocess.preprocess(jnp.asarray(random_batch(0)['image']), image_size=32,
                                 dtype=jnp.float32)
  micro_stats = [batch_stats_of(steps.model_variables(initial), images[index::2])
                 for index in range(2)]
  expected = jax.tree.map(lambda a, b: (a + b) / 2, *micro_stats)
  for got, want in zip(jax.tree.leaves(state.batch_stats), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The first layer sees the same inputs either way: its running mean is the big batch's.
  big = batch_stats_of(steps.model_variables(initial), images)
  first = sorted(big)[0]
  np.testing.assert_allclose(state.batch_stats[first]['mean'], big[first]['mean'], atol=1e-6)
  assert not np.allclose(state.batch_stats[first]['var'], initial.batch_stats[first]['var'])


def test_micro_batches_are_strided_and_rejoin_in_order():
  x = jnp.arange(12).reshape(6, 2)
  micro = steps.split_micro_batches(x, 3)
  assert micro.shape == (3, 2, 2)
  np.testing.assert_array_equal(micro[1], x[1::3])
  np.testing.assert_array_equal(steps.join_micro_batches(micro), x)


@pytest.mark.parametrize('value, message', [
    (3, 'batch_size=16 must split into grad_accum_steps=3 micro-batches'),
    (0, 'grad_accum_steps=0 must be an int >= 1'),
])
def test_bad_grad_accum_steps_is_a_config_error(value, message):
  with pytest.raises(configuration.ConfigError, match=message):
    configuration.validate_config(small_config(grad_accum_steps=value))
