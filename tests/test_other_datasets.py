"""Any local TFDS image-classification dataset trains through the same pipeline."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from input_pipeline import pipeline
from vgg_flax import train
from vgg_flax.workdir import files

NUM_CLASSES = 3


class ToyGray(tfds.core.GeneratorBasedBuilder):
  """28x28 grayscale images whose class is their mean brightness (MNIST-like shapes)."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(28, 28, 1)),
        'label': tfds.features.ClassLabel(names=['dark', 'grey', 'light']),
    }), supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(48, seed=0),
            'test': self._generate_examples(20, seed=1)}

  def _generate_examples(self, count, seed):
    rng = np.random.default_rng(seed)
    for i in range(count):
      label = i % NUM_CLASSES
      image = rng.integers(0, 40, (28, 28, 1)) + 100 * label
      yield i, {'image': image.astype(np.uint8), 'label': label}


@pytest.mark.slow  # Prepares a dataset and trains end to end.
def test_a_grayscale_tfds_dataset_trains_and_evaluates(data_config, tmp_path):
  data_config.dataset = 'toy_gray'
  data_config.data_source = ''
  data_config.data_dir = str(tmp_path / 'tfds')
  data_config.eval_split = 'test'
  data_config.num_epochs = 1
  dataset = pipeline.open_dataset(data_config)
  info = dataset.info
  assert (info.num_classes, info.label_names) == (3, ('dark', 'grey', 'light'))
  assert info.split_sizes == {'train': 48, 'test': 20}
  batches = list(dataset.eval_batches(data_config, 'test'))
  assert sum(int(b['mask'].sum()) for b in batches) == 20
  assert batches[0]['image'].shape == (16, 28, 28, 1)
  train.train_and_evaluate(data_config, str(tmp_path / 'run'))
  history = files.read_history(tmp_path / 'run' / 'history.csv')
  assert len(history) == 1 and np.isfinite(history[0]['val_loss'])
