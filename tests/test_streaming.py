"""Streaming without a cache (datasets larger than memory) and the `cache='auto'` choice."""

import hashlib
import logging
import sys

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import pytest

from configs import default
from input_pipeline import pipeline
from vgg_flax.workdir import config as configuration
from vgg_flax import train


@pytest.fixture
def streaming(data_config, monkeypatch):
  """`data_config` without a cache, with a shuffle buffer smaller than the train split."""
  data_config.cache = False
  monkeypatch.setattr(pipeline, 'SHUFFLE_BUFFER', 10)  # 96 train images: the buffer bounds.
  return data_config


def digests(images: np.ndarray) -> list[str]:
  """One digest per image, to tell images apart."""
  return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


def epoch_digests(config, dataset, epoch: int) -> list[str]:
  """Digests of one epoch's train images, in order."""
  batches = list(dataset.train_batches(config, epoch=epoch))
  assert len(batches) == pipeline.train_steps_per_epoch(config, dataset.info)
  return [d for batch in batches for d in digests(batch['image'])]


def stored_train_digests(config, dataset) -> list[str]:
  """Digests of every train image in stored order (read as an eval split)."""
  return [d for batch in dataset.eval_batches(config, config.train_split)
          for d in digests(batch['image'][batch['mask']])]


def test_streamed_epoch_holds_each_image_once(streaming, monkeypatch, caplog):
  dataset = pipeline.open_dataset(streaming)
  stored = stored_train_digests(streaming, dataset)
  assert len(stored) == len(set(stored)) == 96

  def no_cache(*args):
    raise AssertionError(f'cached_arrays{args} called without a cache')

  monkeypatch.setattr(dataset, 'cached_arrays', no_cache)
  batches = list(dataset.train_batches(streaming, epoch=0))
  assert len(batches) == 6 and batches[0]['image'].shape == (16, 64, 64, 3)
  labels = np.concatenate([b['label'] for b in batches])
  assert np.bincount(labels).tolist() == [24] * 4
  streamed = [d for b in batches for d in digests(b['image'])]
  assert sorted(streamed) == sorted(stored)  # Every image exactly once.
  assert streamed != stored  # Shuffled, not the stored (class-by-class) order.
  # TFDS's warning that the ordered (file-name order) dataset is read out of order is meant.
  assert not any('ordered dataset' in r.getMessage() for r in caplog.records)


def test_streamed_order_is_a_function_of_seed_and_epoch(streaming):
  dataset = pipeline.open_dataset(streaming)
  first = epoch_digests(streaming, dataset, epoch=1)
  assert epoch_digests(streaming, dataset, epoch=1) == first
  assert epoch_digests(streaming, dataset, epoch=2) != first
  streaming.seed = 1
  assert epoch_digests(streaming, dataset, epoch=1) != first


def test_streamed_shares_of_two_processes_cover_each_image_once(streaming, monkeypatch):
  dataset = pipeline.open_dataset(streaming)
  stored = stored_train_digests(streaming, dataset)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  shares = []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    batches = list(dataset.train_batches(streaming, epoch=0))
    assert len(batches) == 6 and batches[0]['image'].shape == (8, 64, 64, 3)
    shares.append([d for b in batches for d in digests(b['image'])])
  assert set(shares[0]).isdisjoint(shares[1])
  assert sorted(shares[0] + shares[1]) == sorted(stored)


def params_of(state):
  return jax.tree.map(np.asarray, (state.params, state.batch_stats, state.opt_state))


@pytest.mark.slow  # Trains end to end: three runs.
def test_resume_without_a_cache_is_exact(streaming, tmp_path):
  reference = params_of(train.train_and_evaluate(streaming, str(tmp_path / 'straight')))
  streaming.num_epochs = 1  # Stops after epoch 1, as if interrupted there.
  train.train_and_evaluate(streaming, str(tmp_path / 'resumed'))
  streaming.num_epochs = 2
  state = train.train_and_evaluate(streaming, str(tmp_path / 'resumed'))
  assert int(state.step) == 12
  jax.tree.map(np.testing.assert_array_equal, params_of(state), reference)


def test_auto_caches_only_what_fits(data_config, monkeypatch, caplog):
  monkeypatch.setattr(pipeline, 'SHUFFLE_BUFFER', 10)
  dataset = pipeline.open_dataset(data_config)  # Its own memo: nothing logged yet.
  assert pipeline.decoded_bytes(dataset.info, 'train') == 96 * 64 * 64 * 3
  orders = {}
  for cache in (True, False):
    data_config.cache = cache
    orders[cache] = epoch_digests(data_config, dataset, epoch=0)
  assert orders[True] != orders[False]  # A permutation and a stream: distinct orders.
  data_config.cache = 'auto'
  caplog.set_level(logging.INFO)
  for budget, cached in [(1e-3, False), (4.0, True)]:  # 96 images decode to 1.1 MiB.
    data_config.cache_max_gib = budget
    assert dataset.use_cache(data_config, 'train') is cached
    assert epoch_digests(data_config, dataset, epoch=0) == orders[cached]
    choice = 'caching it in memory' if cached else 'streaming it from the TFRecords'
    assert any(f"split 'train' decodes to 0.00 GiB, {'within' if cached else 'over'} "
               f'cache_max_gib={budget:g}: {choice}' in r.getMessage() for r in caplog.records)


def test_auto_logs_each_choice_once_per_dataset(data_config, caplog):
  data_config.cache_max_gib = 3.5
  caplog.set_level(logging.INFO)
  datasets = [pipeline.open_dataset(data_config) for _ in range(2)]
  for dataset in datasets:
    for _ in range(3):
      assert dataset.use_cache(data_config, 'validation')
    list(dataset.eval_batches(data_config, 'validation'))  # Asks again: logged already.
  logged = [r.getMessage() for r in caplog.records if "cache='auto'" in r.getMessage()]
  assert logged == ["cache='auto': split 'validation' decodes to 0.00 GiB, within "
                    'cache_max_gib=3.5: caching it in memory.'] * 2  # Once per Dataset.


def test_workdir_saved_before_cache_max_gib_uses_the_default(data_config):
  saved = data_config.to_dict()
  del saved['cache_max_gib']
  old = configuration.migrate(saved)
  configuration.validate_config(old)
  info = pipeline.get_dataset_info(data_config)
  assert pipeline.use_cache(old, info, 'train')  # 1.1 MiB within the default 4 GiB.
  assert pipeline.DEFAULT_CACHE_MAX_GIB == default.get_config().cache_max_gib == 4.0


@pytest.mark.parametrize('field,value,message', [
    ('cache', 'yes', "cache='yes' is not one of True, False, 'auto'."),
    ('cache', 1, "cache=1 is not one of True, False, 'auto'."),
    ('cache_max_gib', 0.0, 'cache_max_gib=0.0 must be a positive number of GiB.'),
    ('cache_max_gib', -2.0, 'cache_max_gib=-2.0 must be a positive number of GiB.'),
])
def test_bad_cache_values_name_the_field(field, value, message):
  config = default.get_config()
  config[field] = value
  with pytest.raises(configuration.ConfigError, match=f'^{message}$'.replace('(', r'\(')):
    configuration.validate_config(config)


@pytest.mark.parametrize('flag,value', [('False', False), ('True', True), ('auto', 'auto')])
def test_cache_flag_parses_bools_and_auto(flag, value, monkeypatch):
  argv = ['main.py', '--config=configs/default.py', f'--config.cache={flag}']
  monkeypatch.setattr(sys, 'argv', argv)  # config_flags reads the overrides from sys.argv.
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=flag_values)
  flag_values(argv)
  assert flag_values.config.cache is value or flag_values.config.cache == value
  assert type(flag_values.config.cache) is type(value)
  configuration.validate_config(flag_values.config)
