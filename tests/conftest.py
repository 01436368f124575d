"""Shared fixtures: generated samples (folder and zip), a TFDS data dir, a small config."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

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


@pytest.fixture
def data_config(sample_folder, tfds_data_dir):
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
