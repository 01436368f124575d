"""Training here is training in the original PyTorch project, step for step.

The same initial weights (a PyTorch state_dict, loaded here through `config.init_from`), the
same images in one full batch, no augmentation, fp32: the loss of each Adam step and the
validation loss after it agree with PyTorch's to 1e-4 relative. The BatchNorm tests show why
the running variance must be updated with the unbiased batch variance, as PyTorch does.
"""

import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

from configs import default
from input_pipeline import pipeline
from input_pipeline import synthetic
from vgg_flax.core import models
from vgg_flax import train
from vgg_flax.workdir import files

REPO = pathlib.Path(__file__).resolve().parents[1]
WIDTH, HIDDEN = 8, 32
STEPS = 4
# 4 classes x 4 images of 64 px (the original's size; nothing is resized): one batch of 16.
SAMPLE = dict(num_classes=4, train_per_class=4, val_per_class=2, test_images=1, seed=1)


def add_pixel_noise(folder: pathlib.Path, seed: int = 0) -> None:
  """Rewrites every JPEG with per-pixel noise.

  The generated classes have flat regions, where neighbouring conv outputs are equal in
  exact arithmetic; each library breaks those 2x2 max-pool ties by its own rounding, so the
  gradient goes to a different pixel (PyTorch's fp32 CPU gradients of the first stages then
  differ from its own fp64 ones by 20-40%). Photographs have no such plateaus.
  """
  rng = np.random.default_rng(seed)
  for path in sorted(folder.rglob('*.JPEG')):
    with Image.open(path) as image:
      pixels = np.asarray(image.convert('RGB'), np.int16)
    noisy = np.clip(pixels + rng.integers(-40, 41, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, format='JPEG', quality=95)


def split_arrays(config, dataset, split):
  """A whole split as (images, labels), in stored order."""
  images, labels = [], []
  for batch in dataset.eval_batches(config, split):
    images.append(batch['image'][batch['mask']])
    labels.append(batch['label'][batch['mask']])
  return np.concatenate(images), np.concatenate(labels)


def train_in_torch(train_data, val_data, num_classes, folder: pathlib.Path):
  """PyTorch's run (`tests/torch_training.py`, in its own process): its initial state_dict
  file, and the training and validation losses of each step."""
  arrays, losses = folder / 'arrays.npz', folder / 'losses.npz'
  np.savez(arrays, train_images=train_data[0], train_labels=train_data[1],
           val_images=val_data[0], val_labels=val_data[1], width=WIDTH, hidden=HIDDEN,
           num_classes=num_classes, steps=STEPS)
  initial = folder / 'initial.pt'
  subprocess.run([sys.executable, '-m', 'tests.torch_training', f'--arrays={arrays}',
                  f'--initial={initial}', f'--losses={losses}'], check=True, cwd=REPO,
                 timeout=300)
  result = np.load(losses)
  return initial, result['train_losses'], result['val_losses']


@pytest.fixture(scope='module')
def parity_config(tmp_path_factory):
  """The original's recipe (Adam 1e-3, average pool, BatchNorm) on 16 images, one batch a step."""
  root = tmp_path_factory.mktemp('parity')
  config = default.get_config()
  config.data_source = str(synthetic.write_sample(root / 'sample', **SAMPLE))
  add_pixel_noise(pathlib.Path(config.data_source))
  config.data_dir = str(root / 'tfds')
  config.image_size = 64
  config.model.depth = 11
  config.model.width = WIDTH
  config.model.hidden_units = HIDDEN
  config.model.pool_type = 'avg'  # The original's code.
  config.augment.flip = False
  config.batch_size = 16
  config.eval_batch_size = 8
  config.num_epochs = STEPS
  config.early_stopping.patience = STEPS
  config.progress_bar = False
  config.log_every_steps = 1
  return config


@pytest.mark.slow  # Trains in PyTorch and here, end to end.
def test_adam_steps_and_validation_losses_match_pytorch(parity_config, tmp_path):
  dataset = pipeline.open_dataset(parity_config)
  train_data = split_arrays(parity_config, dataset, 'train')
  val_data = split_arrays(parity_config, dataset, 'validation')
  assert len(train_data[0]) == parity_config.batch_size  # One full batch a step.
  initial, want_train, want_val = train_in_torch(train_data, val_data,
                                                 dataset.info.num_classes, tmp_path)
  parity_config.init_from = str(initial)
  train.train_and_evaluate(parity_config, str(tmp_path / 'run'))
  history = files.read_history(tmp_path / 'run' / 'history.csv')

  assert [row['epoch'] for row in history] == list(range(1, STEPS + 1))
  # The steps move the losses far more than the tolerance: the comparison has teeth.
  assert want_train[0] - want_train[-1] > 0.05
  assert np.ptp(want_val) > 0.01
  np.testing.assert_allclose([row['train_loss'] for row in history], want_train, rtol=1e-4)
  np.testing.assert_allclose([row['val_loss'] for row in history], want_val, rtol=1e-4)


def torch_batch_norm_after_one_step(x: np.ndarray) -> torch.nn.BatchNorm2d:
  bn = torch.nn.BatchNorm2d(x.shape[-1])
  bn.train()
  bn(torch.tensor(x.transpose(0, 3, 1, 2)))
  return bn


def running_var_after_one_step(x: np.ndarray, running_var: str) -> np.ndarray:
  module = models.BatchNorm(use_running_average=False, running_var=running_var)
  variables = module.init(jax.random.key(0), x)
  _, updates = module.apply(variables, x, mutable=['batch_stats'])
  return np.asarray(updates['batch_stats']['var'])


# At 2x2 the biased update is off by far more than the parity tolerance, at 32x32 by less.
@pytest.mark.parametrize('side, min_gap, max_gap', [(2, 1e-3, 1e-1), (32, 0.0, 1e-4)])
def test_running_variance_is_pytorchs_and_the_biased_one_is_off_at_small_maps(
    side, min_gap, max_gap):
  batch = 16
  x = np.asarray(jax.random.normal(jax.random.key(side), (batch, side, side, 6)) * 2 + 1)
  want = torch_batch_norm_after_one_step(x).running_var.detach().numpy()
  np.testing.assert_allclose(running_var_after_one_step(x, 'unbiased'), want, rtol=1e-6)
  # The biased update misses exactly (1 - momentum) * var / (n - 1): here 5e-3 of the
  # running variance at 2x2 (n = 64), 2e-5 at 32x32 (n = 16,384).
  biased = running_var_after_one_step(x, 'biased')
  n = batch * side * side
  batch_var = x.reshape(-1, 6).var(axis=0)
  # (atol: float32 rounding of a running variance near 1 is about 1e-7.)
  np.testing.assert_allclose(want - biased, 0.1 * batch_var / (n - 1), rtol=1e-3, atol=1e-6)
  gap = np.abs(biased / want - 1)
  assert min_gap < gap.min() and gap.max() < max_gap


def test_biased_option_is_flax_batch_norm_bit_for_bit():
  """Old checkpoints, `vgg_flax.convert` and bf16 runs see the same variables and numbers."""
  x = jax.random.normal(jax.random.key(3), (8, 4, 4, 5), jnp.float32) * 3 + 2
  ours = models.BatchNorm(use_running_average=False, running_var='biased')
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  variables = flax_bn.init(jax.random.key(0), x)
  assert jax.tree.map(np.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
      np.shape, variables)
  variables = jax.tree.map(lambda v: v + 0.3, variables)  # Non-trivial running stats.
  for train_mode in (True, False):
    got = ours.clone(use_running_average=not train_mode).apply(
        variables, x, mutable=['batch_stats'])
    want = flax_bn.clone(use_running_average=not train_mode).apply(
        variables, x, mutable=['batch_stats'])
    jax.tree.map(np.testing.assert_array_equal, got, want)
