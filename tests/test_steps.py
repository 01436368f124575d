"""The jitted train and eval steps on fake batches: values, masks, sharding, compilation."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from vgg_flax.core import metrics as vgg_metrics
from vgg_flax.core import factory
from vgg_flax.core import sharding
from vgg_flax.core import steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 5


def tiny_config(**overrides):
  config = default.get_config()
  config.image_size = 32
  config.model.depth = 11
  config.model.width = 4
  config.model.hidden_units = 16
  config.batch_size = 8
  for key, value in overrides.items():
    config[key] = value
  return config


def fake_batch(size=8, seed=0, with_mask=False):
  rng = np.random.default_rng(seed)
  batch = {'image': rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8),
           'label': rng.integers(0, NUM_CLASSES, (size,)).astype(np.int32)}
  if with_mask:
    batch['mask'] = np.ones(size, bool)
  return batch


def build(config, mesh=None):
  """The initial state, the jitted train and eval steps and the mesh, as training builds them."""
  compiled, state = factory.create(config, num_classes=NUM_CLASSES, steps_per_epoch=10,
                                   mesh=mesh)
  return state, compiled.train_step, compiled.eval_step, compiled.mesh


@pytest.fixture(scope='module')
def built():
  """One compiled model for the tests that share the default tiny config."""
  return build(tiny_config(learning_rate=0.01))


def fresh_state(built_steps):
  """A copy of the initial state: the train step donates (consumes) its input state."""
  return jax.tree.map(jnp.copy, built_steps[0])


def test_top_k_correct():
  logits = jnp.array([[0.1, 0.5, 0.2], [0.9, 0.06, 0.04], [0.3, 0.3, 0.4]])
  labels = jnp.array([1, 2, 0])
  np.testing.assert_array_equal(vgg_metrics.top_k_correct(logits, labels, 1), [1, 0, 0])
  np.testing.assert_array_equal(vgg_metrics.top_k_correct(logits, labels, 2), [1, 0, 1])
  np.testing.assert_array_equal(vgg_metrics.top_k_correct(logits, labels, 5), [1, 1, 1])


def test_train_step_lowers_loss_and_updates_state(built):
  _, train, _, mesh = built
  state = fresh_state(built)
  batch = sharding.to_global_batch(fake_batch(), sharding.data_sharding(mesh))
  stats_before = jax.tree.map(np.asarray, state.batch_stats)
  losses = []
  for _ in range(8):
    state, step_metrics = train(state, batch)
    losses.append(float(step_metrics.compute()['loss']))
  assert int(state.step) == 8
  assert losses[-1] < losses[0] * 0.8, losses
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(),
                                       state.batch_stats, stats_before))
  assert min(moved) > 0  # Every BatchNorm statistic was updated by train=True.
  np.testing.assert_allclose(float(step_metrics.compute()['learning_rate']), 0.01)


def test_first_train_step_loss_is_the_cross_entropy():
  config = tiny_config()
  config.augment.flip = False
  state, train, _, mesh = build(config)
  host = fake_batch()
  variables = jax.tree.map(np.asarray, steps.model_variables(state))
  from vgg_flax.core import preprocess  # pylint: disable=g-import-not-at-top
  images = preprocess.preprocess(host['image'], image_size=32)
  # Jitted: one program instead of one compile per op.
  logits, _ = jax.jit(functools.partial(state.apply_fn, train=True, mutable=['batch_stats']))(
      variables, images)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, host['label']).mean()
  _, step_metrics = train(state, sharding.to_global_batch(host, sharding.data_sharding(mesh)))
  np.testing.assert_allclose(float(step_metrics.compute()['loss']), float(expected), rtol=1e-5)


def test_eval_step_leaves_padding_out(built):
  _, _, evaluate, mesh = built
  state = fresh_state(built)
  host = fake_batch(with_mask=True)
  host['mask'][5:] = False
  host['label'][5:] = -1
  log_probs, result = evaluate(steps.model_variables(state),
                               sharding.to_global_batch(host, sharding.data_sharding(mesh)))
  computed = result.compute()
  logits = steps.infer_logits(state.apply_fn, steps.model_variables(state), host['image'][:5],
                              image_size=32, dtype=jnp.float32)
  expected_loss = optax.softmax_cross_entropy_with_integer_labels(logits, host['label'][:5])
  expected_acc = np.mean(np.argmax(logits, -1) == host['label'][:5])
  np.testing.assert_allclose(float(computed['loss']), float(expected_loss.mean()), rtol=1e-5)
  np.testing.assert_allclose(float(computed['accuracy']), expected_acc)
  assert int(result.loss.count) == 5
  # The same step gives the log-probabilities of every row, padding included.
  assert log_probs.shape == (8, NUM_CLASSES) and log_probs.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(log_probs)[:5], jax.nn.log_softmax(logits), atol=1e-5)


def test_eval_leaves_batch_stats_alone(built):
  _, _, evaluate, mesh = built
  state = fresh_state(built)
  before = jax.tree.map(np.asarray, state.batch_stats)
  evaluate(steps.model_variables(state),
           sharding.to_global_batch(fake_batch(with_mask=True), sharding.data_sharding(mesh)))
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray,
                                                                   state.batch_stats))


def test_eval_step_metrics_are_those_of_its_log_probs_with_flip_tta(built):
  """With tta='flip' the metrics score the averaged prediction the step returns."""
  state = fresh_state(built)
  mesh = built[3]
  host = fake_batch(with_mask=True)
  host['mask'][6:] = False
  apply_fn = factory.create(tiny_config(), num_classes=NUM_CLASSES,
                            steps_per_epoch=10)[0].model.apply
  flip = steps.jit_eval_step(apply_fn, tiny_config(), mesh, tta='flip')
  log_probs, result = flip(steps.model_variables(state),
                           sharding.to_global_batch(host, sharding.data_sharding(mesh)))
  log_probs, labels = np.asarray(log_probs)[:6], host['label'][:6]
  plain = steps.infer_log_probs(apply_fn, steps.model_variables(state), host['image'][:6],
                                image_size=32, dtype=jnp.float32)
  mirrored = steps.infer_log_probs(apply_fn, steps.model_variables(state),
                                   host['image'][:6, :, ::-1], image_size=32, dtype=jnp.float32)
  np.testing.assert_allclose(np.exp(log_probs), (np.exp(plain) + np.exp(mirrored)) / 2,
                             atol=1e-6)
  computed = result.compute()
  np.testing.assert_allclose(float(computed['loss']),
                             -np.mean(log_probs[np.arange(6), labels]), rtol=1e-5)
  assert float(computed['accuracy']) == np.mean(np.argmax(log_probs, -1) == labels)
  assert int(result.loss.count) == 6


def test_steps_compile_once():
  state, train, evaluate, mesh = build(tiny_config())
  batch_sharding = sharding.data_sharding(mesh)
  for seed in range(2):
    state, _ = train(state, sharding.to_global_batch(fake_batch(seed=seed), batch_sharding))
  evaluate(steps.model_variables(state),
           sharding.to_global_batch(fake_batch(with_mask=True), batch_sharding))
  state, _ = train(state, sharding.to_global_batch(fake_batch(seed=3), batch_sharding))
  assert train._cache_size() == 1  # pylint: disable=protected-access
  assert evaluate._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize('name,extra', [('adam', {}), ('adamw', {'weight_decay': 0.1}),
                                        ('sgd', {'weight_decay': 5e-4})])
def test_optimizers_take_a_finite_step(name, extra):
  config = tiny_config(optimizer=name, schedule='cosine', warmup_epochs=1, num_epochs=3,
                       learning_rate=0.01, **extra)
  state, train, _, mesh = build(config)
  before = jax.tree.map(np.asarray, state.params)
  state, step_metrics = train(state, sharding.to_global_batch(fake_batch(),
                                                              sharding.data_sharding(mesh)))
  # Warm-up starts at 0: the first step uses learning rate 0, so params stay put.
  assert float(step_metrics.compute()['learning_rate']) == 0.0
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, state.params))
  state, step_metrics = train(state, sharding.to_global_batch(fake_batch(),
                                                              sharding.data_sharding(mesh)))
  assert 0 < float(step_metrics.compute()['learning_rate']) < 0.01
  assert np.isfinite(float(step_metrics.compute()['loss']))


def test_cosine_schedule_shape():
  config = tiny_config(schedule='cosine', warmup_epochs=2, num_epochs=10, learning_rate=0.1)
  schedule = steps.create_learning_rate_schedule(config, steps_per_epoch=10)
  np.testing.assert_allclose([schedule(0), schedule(10), schedule(20), schedule(100)],
                             [0.0, 0.05, 0.1, 0.0], atol=1e-7)


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_four_devices_equal_one_device():
  """One step on 4 emulated CPU devices equals one step on 1 device (same global batch)."""
  script = textwrap.dedent('''
      import jax, numpy as np
      from tests import test_steps as t
      from vgg_flax.core import sharding
      assert jax.device_count() == 4, jax.devices()
      config = t.tiny_config()
      results = []
      for devices in (jax.devices()[:1], jax.devices()):
        state, train, _, mesh = t.build(config, sharding.create_mesh(devices))
        batch = sharding.to_global_batch(t.fake_batch(), sharding.data_sharding(mesh))
        state, m = train(state, batch)
        results.append((jax.tree.map(np.asarray, (state.params, state.batch_stats)),
                        float(m.compute()['loss'])))
      (p1, l1), (p4, l4) = results
      np.testing.assert_allclose(l1, l4, rtol=1e-5)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p1, p4)
      print('EQUAL')
  ''')
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'EQUAL' in result.stdout
