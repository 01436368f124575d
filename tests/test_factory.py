"""vgg_flax.core.factory: one place builds the model, optimizer, initial state and jitted steps."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import default
from vgg_flax.core import factory
from vgg_flax.core import sharding
from vgg_flax.core import steps

NUM_CLASSES = 3


def tiny_config(**overrides):
  config = default.vgg_config(11)
  config.model.update(width=4, hidden_units=16)
  config.update(image_size=32, batch_size=4, eval_batch_size=4, **overrides)
  return config


@pytest.fixture(scope='module')
def built():
  """One build for the module (each build compiles the init)."""
  config = tiny_config(seed=3, schedule='cosine', warmup_epochs=1, num_epochs=3,
                       learning_rate=0.1)
  return config, *factory.create(config, num_classes=NUM_CLASSES, steps_per_epoch=7)


def test_the_state_is_returned_apart_and_seeded_by_the_config(built):
  _, compiled, state = built
  assert isinstance(state, steps.TrainState) and int(state.step) == 0
  # The compiled pieces hold no array: after the first (donating) step nothing stale is kept.
  held = [getattr(compiled, f.name) for f in dataclasses.fields(compiled)]
  assert not [x for x in jax.tree.leaves([h for h in held if not callable(h)])
              if isinstance(x, jax.Array)]
  # The initial state is the config's seed's: rebuilt with the same seed it is the same.
  np.testing.assert_array_equal(
      np.asarray(compiled.init_state(jax.random.key(3)).params['stage1_1_conv']['kernel']),
      np.asarray(state.params['stage1_1_conv']['kernel']))
  assert state.params['fc3']['bias'].shape == (NUM_CLASSES,)


def test_abstract_state_has_the_real_states_shapes_and_shardings(built):
  config, compiled, state = built
  _, abstract = factory.create(config, num_classes=NUM_CLASSES, steps_per_epoch=7,
                               abstract=True)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
  def describe(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), x.shape, x.dtype, x.sharding) for path, x in leaves]

  assert describe(abstract) == describe(state)
  assert describe(compiled.abstract_state(state)) == describe(state)
  assert len(describe(state)) > 20


def test_schedule_counts_in_steps_per_epoch_and_steps_run(built):
  _, compiled, state = built
  state = jax.tree.map(jax.numpy.copy, state)  # The train step donates its input.
  np.testing.assert_allclose(compiled.learning_rate_fn(7), 0.1, rtol=1e-6)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
           'label': rng.integers(0, NUM_CLASSES, 4).astype(np.int32),
           'mask': np.array([True, True, True, False])}
  global_batch = sharding.to_global_batch(batch, sharding.data_sharding(compiled.mesh))
  state, _ = compiled.train_step(state, global_batch)
  assert int(state.step) == 1
  log_probs, metrics = compiled.eval_step(steps.model_variables(state), global_batch)
  assert log_probs.shape == (4, NUM_CLASSES)
  assert int(metrics.loss.count) == 3
