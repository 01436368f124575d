"""What a workdir holds: config.json written atomically and read back, and the restore checks."""

import json

import numpy as np
import pytest

from configs import default
from input_pipeline import pipeline
from tests import converted_workdir
from vgg_flax.workdir import config as configuration
from vgg_flax import convert
from vgg_flax.modes import predictions as inference
from vgg_flax.interop import commands
from vgg_flax.workdir import files
from vgg_flax.workdir import restore
from vgg_flax.workdir import config as run_config


def tiny_config():
  config = default.vgg_config(11)
  config.model.update(width=8, hidden_units=32)
  config.image_size = 32
  return config


def test_config_round_trips_through_config_json(tmp_path):
  config = tiny_config()
  config.tta = 'flip'
  run_config.write_config(tmp_path, config)
  path = tmp_path / files.CONFIG_FILE
  assert json.loads(path.read_text()) == {run_config.FORMAT_KEY: run_config.FORMAT_VERSION,
                                          **configuration.config_to_dict(config)}
  assert path.read_text().endswith('}\n')  # Indented JSON, as training always wrote it.
  assert run_config.read_config(tmp_path).to_dict() == configuration.config_to_dict(config)
  assert sorted(p.name for p in tmp_path.iterdir()) == [files.CONFIG_FILE]  # No temp file.


def test_a_failed_convert_keeps_the_previous_config_json(tmp_path, monkeypatch):
  """convert writes config.json atomically: a write that fails leaves the old one whole."""
  run_config.write_config(tmp_path, tiny_config())
  before = (tmp_path / files.CONFIG_FILE).read_text()

  def crash(*args, **kwargs):
    raise OSError('simulated crash while writing')

  monkeypatch.setattr(json, 'dumps', crash)
  with pytest.raises(OSError, match='simulated crash'):
    commands.write_converted_workdir(default.get_config(), {}, str(tmp_path))
  monkeypatch.undo()
  assert (tmp_path / files.CONFIG_FILE).read_text() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == [files.CONFIG_FILE]


def test_converted_workdir_config_is_the_atomic_writers(tmp_path):
  """`convert` writes config.json through `write_config`: same bytes as training's."""
  config = tiny_config()
  converted_workdir.write_workdir(tmp_path / 'converted', config, num_classes=3)
  run_config.write_config(tmp_path / 'trained', config)
  assert ((tmp_path / 'converted' / files.CONFIG_FILE).read_bytes()
          == (tmp_path / 'trained' / files.CONFIG_FILE).read_bytes())
  assert not [p.name for p in (tmp_path / 'converted').iterdir() if p.name.startswith('.')]


def test_read_config_of_a_folder_without_one(tmp_path):
  with pytest.raises(configuration.ConfigError, match='config.json does not exist') as raised:
    run_config.read_config(tmp_path)
  assert '\n' not in str(raised.value)


def test_load_workdir_config_names_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="member 'a': workdir .*missing does not exist"):
    restore.load_workdir_config(tmp_path / 'missing', "member 'a'")
  (tmp_path / 'notes').mkdir()
  with pytest.raises(FileNotFoundError, match='notes holds no config.json'):
    restore.load_workdir_config(tmp_path / 'notes', 'run')
  run_config.write_config(tmp_path / 'notes', tiny_config())
  with pytest.raises(FileNotFoundError, match='notes holds no best/ checkpoint'):
    restore.load_workdir_config(tmp_path / 'notes', 'run')


def test_resolve_config_takes_runtime_and_data_fields_only():
  saved, runtime, data = tiny_config(), default.get_config(), default.get_config()
  runtime.update(eval_split='test', eval_batch_size=8, tta='flip', learning_rate=0.5)
  runtime.model.depth = 19
  data.data_source, data.sample.enabled = '/elsewhere/tiny.zip', True
  resolved = restore.resolve_config(saved, runtime, data)
  assert (resolved.eval_split, resolved.eval_batch_size, resolved.tta) == ('test', 8, 'flip')
  assert resolved.learning_rate == saved.learning_rate and resolved.model.depth == 11
  assert resolved.data_source == '/elsewhere/tiny.zip' and resolved.sample.enabled
  assert not restore.names_data(saved) and restore.names_data(data)


def test_resolve_config_takes_a_runtime_value_of_another_type(tmp_path):
  """A workdir saved with cache='auto' is evaluated with --config.cache=False (a bool)."""
  run_config.write_config(tmp_path, tiny_config())
  saved, runtime = run_config.read_config(tmp_path), default.get_config()
  assert saved.cache == 'auto'
  runtime.cache = False
  assert restore.resolve_config(saved, runtime, saved).cache is False


def test_evaluate_metrics_come_from_the_eval_step(tmp_path, sample_folder, tfds_data_dir):
  """`predict_split`'s metrics are the eval step's clu metrics of the very log-probs."""
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  config.eval_batch_size = 24  # The last batch is padded: the mask must leave it out.
  num_classes = pipeline.get_dataset_info(config).num_classes
  converted_workdir.write_workdir(tmp_path, config, num_classes=num_classes)
  restored = restore.restore_model('run', tmp_path, runtime=config, data=config)
  predictions = inference.predict_split(restored, 'validation')
  labels, log_probs = predictions.labels, predictions.log_probs
  assert set(predictions.metrics) == {'loss', 'accuracy', 'top5_accuracy'}
  loss = -log_probs[np.arange(len(labels)), labels]
  np.testing.assert_allclose(predictions.metrics['loss'], loss.mean(), rtol=1e-5)
  np.testing.assert_allclose(predictions.metrics['accuracy'],
                             np.mean(np.argmax(log_probs, -1) == labels), rtol=1e-6)
  top5 = np.argsort(-log_probs, axis=-1)[:, :5]
  np.testing.assert_allclose(predictions.metrics['top5_accuracy'],
                             np.mean((top5 == labels[:, None]).any(-1)), rtol=1e-6)
