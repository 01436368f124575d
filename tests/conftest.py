"""Shared fixtures: generated samples (folder and zip), a TFDS data dir, a small config,
one short training run."""

import atexit
import dataclasses
import os
import pathlib
import shutil
import tempfile
from typing import Any

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
# One persistent JAX compilation cache for the session: this process (JAX reads these when
# first imported, below) and every main.py it starts (`platform.enable_compilation_cache`
# takes the variable over the folder beside the workdir), so each tiny program compiles once.
# Tests of the cache itself give their own folders. Removed when the session ends.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='vgg_flax_test_jax_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # pylint: disable=g-import-not-at-top

from configs import default  # pylint: disable=g-import-not-at-top
from input_pipeline import synthetic  # pylint: disable=g-import-not-at-top

# Small enough to prepare in well under a second, big enough for several batches.
SAMPLE = dict(num_classes=4, train_per_class=24, val_per_class=8, test_images=12, seed=0)


@pytest.fixture(scope='session')
def sample_params():
  """The parameters of `sample_folder` and `sample_zip`."""
  return dict(SAMPLE)


@pytest.fixture(scope='session')
def sample_folder(tmp_path_factory):
  """The extracted `tiny-imagenet-200` folder of a generated sample."""
  return synthetic.write_sample(tmp_path_factory.mktemp('sample_folder'), **SAMPLE)


@pytest.fixture(scope='session')
def sample_zip(tmp_path_factory):
  """The same sample as `tiny-imagenet-200.zip`."""
  return synthetic.write_sample(tmp_path_factory.mktemp('sample_zip'), zip=True, **SAMPLE)


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory):
  """A TFDS data dir shared by the session, so each source is prepared once."""
  return tmp_path_factory.mktemp('tfds')


def small_data_config(sample_folder, tfds_data_dir):
  """The default config on the generated sample, with a narrow VGG-11 and small batches."""
  config = default.get_config()
  config.data_source = str(sample_folder)
  config.data_dir = str(tfds_data_dir)
  config.batch_size = 16
  config.eval_batch_size = 16
  config.image_size = 32
  config.model.depth = 11
  config.model.width = 8
  config.model.hidden_units = 32
  config.num_epochs = 2
  config.progress_bar = False
  config.log_every_steps = 2
  return config


@pytest.fixture(scope='session')
def make_data_config(sample_folder, tfds_data_dir):
  """Makes a new `data_config` each call: for module and session fixtures, which cannot
  use that function-scoped fixture."""
  return lambda: small_data_config(sample_folder, tfds_data_dir)


@pytest.fixture
def data_config(make_data_config):
  """The default config on the generated sample, with a narrow VGG-11 and small batches."""
  return make_data_config()


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished `train_and_evaluate` run that tests only read (copy it to change it)."""
  workdir: pathlib.Path
  state: Any  # The train state it returned.


@pytest.fixture(scope='session')
def trained_run(make_data_config, tmp_path_factory):
  """`data_config` trained for its two epochs in `<runs>/fresh`, once per session.

  The workdir's parent holds nothing else of this fixture's, so a test may put other runs
  beside it (e.g. to point TensorBoard's --logdir at both).
  """
  from vgg_flax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('runs') / 'fresh'
  state = train.train_and_evaluate(make_data_config(), str(workdir))
  return TrainedRun(workdir=workdir, state=state)
