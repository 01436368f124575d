"""Label smoothing, random crop and dropout as `steps.train_step` applies them.

The step runs eagerly (not jitted) on a tiny VGG-11, so the model's `apply_fn` can record
the exact images the network was given, and every number is checked against a loss or an
update written out here by hand.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import default
from vgg_flax.core import models
from vgg_flax.core import steps

NUM_CLASSES = 5
SIZE = 32
LEARNING_RATE = 0.1


def step_config(**fields):
  """The train step's config fields: no flip, no crop, no smoothing unless asked."""
  config = default.get_config()
  config.image_size = SIZE
  config.augment.flip = False
  config.augment.crop_padding = fields.pop('crop_padding', 0)
  config.update(fields)
  return config


def batch(size=4, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (size, SIZE, SIZE, 3), dtype=np.uint8),
          'label': rng.integers(0, NUM_CLASSES, (size,)).astype(np.int32)}


class Recorder:
  """`model.apply` that keeps, as uint8 pixels, the images of each train-mode call."""

  def __init__(self, model):
    self.model = model
    self.seen = []

  def keep(self, images):
    self.seen.append(np.round((np.asarray(images) + 1.0) * 127.5).astype(np.int32))

  def __call__(self, variables, images, **kwargs):
    if kwargs.get('train'):
      jax.debug.callback(self.keep, images)  # Runs inside the jitted step too.
    return self.model.apply(variables, images, **kwargs)


@functools.cache
def setup(dropout_rate: float):
  """A tiny VGG-11's initial SGD state; its apply_fn records what the network is fed.

  One state (and so one apply_fn and tx) per model, so each step compiles once per config.
  """
  model = models.VGG(depth=11, num_classes=NUM_CLASSES, width=4, hidden_units=16,
                     dropout_rate=dropout_rate)
  variables = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False)
  return steps.TrainState.create(
      apply_fn=Recorder(model), params=variables['params'], tx=optax.sgd(LEARNING_RATE),
      batch_stats=variables['batch_stats'], rng=jax.random.key_data(jax.random.key(1)))


def initial_state(dropout_rate=0.0):
  """The initial state of `setup`, its recorder emptied."""
  state = setup(dropout_rate)
  state.apply_fn.seen.clear()
  return state


@functools.cache
def jitted_step(**fields):
  config = step_config(**fields)
  return jax.jit(functools.partial(steps.train_step, config=config,
                                   learning_rate_fn=optax.constant_schedule(LEARNING_RATE)))


def run_step(state, host_batch, **fields):
  """One train step with these config fields; returns the new state and its loss."""
  fields = {name: value for name, value in fields.items() if value}  # Defaults: one compile.
  new_state, step_metrics = jitted_step(**fields)(state, host_batch)
  return new_state, float(step_metrics.compute()['loss'])


@functools.partial(jax.jit, static_argnums=0)
def smoothed_loss_and_grads(model, params, batch_stats, images, labels, alpha):
  """Cross-entropy against (1 - alpha) * one_hot + alpha / K, written out."""

  def loss(params):
    logits, _ = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                            train=True, mutable=['batch_stats'])
    targets = (1 - alpha) * jax.nn.one_hot(labels, NUM_CLASSES) + alpha / NUM_CLASSES
    return -(targets * jax.nn.log_softmax(logits)).sum(-1).mean()

  return jax.value_and_grad(loss)(params)


def test_label_smoothing_sets_the_loss_and_the_gradient():
  host = batch()
  images = jnp.asarray(host['image'], jnp.float32) / 127.5 - 1.0
  state = initial_state()
  updated = {}
  for alpha in (0.0, 0.3):
    expected_loss, grads = smoothed_loss_and_grads(
        state.apply_fn.model, state.params, state.batch_stats, images, host['label'], alpha)
    new_state, loss = run_step(state, host, label_smoothing=alpha)
    np.testing.assert_allclose(loss, float(expected_loss), rtol=1e-5)
    expected_params = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, state.params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 new_state.params, expected_params)
    updated[alpha] = np.asarray(new_state.params['fc3']['bias'])
  # The smoothed targets move the last layer's bias by lr * alpha * mean(one_hot - 1/K).
  assert np.abs(updated[0.3] - updated[0.0]).max() > 1e-3


def window_offset(seen: np.ndarray, original: np.ndarray, padding: int) -> tuple[int, int]:
  """Where `seen` lies in `original` zero-padded by `padding`; fails if it is no window."""
  padded = np.pad(original.astype(np.int32), ((padding, padding), (padding, padding), (0, 0)))
  matches = [(y, x) for y in range(2 * padding + 1) for x in range(2 * padding + 1)
             if np.array_equal(padded[y:y + SIZE, x:x + SIZE], seen)]
  assert len(matches) == 1, matches
  return matches[0]


def crop_offsets(state, host, padding):
  """The window each image of `host` was cropped to in one train step from `state`."""
  state.apply_fn.seen.clear()
  run_step(state, host, crop_padding=padding)
  assert len(state.apply_fn.seen) == 1  # One forward pass a step.
  return [window_offset(seen, original, padding)
          for seen, original in zip(state.apply_fn.seen[0], host['image'])]


def test_crop_padding_feeds_each_image_its_own_window_of_the_padded_image():
  host = batch(size=8)
  offsets = crop_offsets(initial_state(), host, 4)
  assert len(set(offsets)) > 1  # Each image draws its own window...
  assert any(offset != (4, 4) for offset in offsets)  # ...not only the unshifted one.
  # Off: the network sees the images as given.
  assert crop_offsets(initial_state(), host, 0) == [(0, 0)] * 8


def test_crop_windows_change_from_step_to_step():
  host = batch(size=8)
  state = initial_state()
  assert crop_offsets(state, host, 4) != crop_offsets(state.replace(step=1), host, 4)


def test_dropout_draws_a_new_mask_each_step_and_only_when_asked():
  """From one state at two step counts: only dropout can make the losses differ."""
  host = batch()
  losses = {rate: [run_step(initial_state(rate).replace(step=step), host)[1]
                   for step in (0, 1)]
            for rate in (0.0, 0.5)}
  assert losses[0.0][0] == losses[0.0][1]
  assert losses[0.5][0] != losses[0.5][1]
  assert losses[0.5][0] != losses[0.0][0]  # The same parameters, half the units dropped.


def test_dropout_follows_the_state_rng():
  host = batch()
  state = initial_state(0.5)
  other_rng = state.replace(rng=jax.random.key_data(jax.random.key(2)))
  same = [run_step(state, host)[1] for _ in range(2)]
  assert same[0] == same[1] != run_step(other_rng, host)[1]  # Reproducible; another seed differs.
