"""--mode=summary on member workdirs written by hand (history.csv, config.json, a tiny best/)."""

import csv
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from PIL import Image

from configs import default
from configs import ensemble as ensemble_config
from vgg_flax.workdir import checkpoints as checkpointing
from vgg_flax.workdir import config as configuration
from vgg_flax.core import models
from vgg_flax.modes import results_table as summary
from vgg_flax.workdir import files

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 5


def history_rows(val_losses, seconds=10.0):
  """history.csv rows: epoch e has train top-1 e/10, val top-1 e/20, val top-5 e/10."""
  return [{'epoch': e, 'train_loss': 3.0 - 0.1 * e, 'train_accuracy': e / 10,
           'train_top5_accuracy': e / 5, 'val_loss': loss, 'val_accuracy': e / 20,
           'val_top5_accuracy': e / 10, 'learning_rate': 1e-3, 'seconds': seconds}
          for e, loss in enumerate(val_losses, start=1)]


def tiny_model_config(depth, conv1x1=False):
  config = default.get_config()
  config.model.depth, config.model.conv1x1 = depth, conv1x1
  config.model.width, config.model.hidden_units = 8, 32
  return config


def abstract_params(config):
  model = models.create_model(config.model, num_classes=NUM_CLASSES)
  images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def make_member(workdir, config, val_losses, *, num_epochs, patience, min_delta=0.0,
                checkpoint=False):
  """A workdir as training leaves it, minus the training: config.json, history.csv, best/."""
  config.num_epochs = num_epochs
  config.early_stopping.patience = patience
  config.early_stopping.min_delta = min_delta
  workdir.mkdir(parents=True)
  (workdir / 'config.json').write_text(json.dumps(configuration.config_to_dict(config)))
  files.write_history(workdir / 'history.csv', history_rows(val_losses))
  if checkpoint:
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract_params(config))
    checkpointing.save_best_variables(workdir, variables, {'epoch': 1})
  return workdir


@pytest.fixture(scope='module')
def members(tmp_path_factory):
  """Two members: one stopped early (patience 2), one that ran all its epochs."""
  root = tmp_path_factory.mktemp('members')
  # Best epoch 2 (1.5), then two epochs without improvement: stopped after epoch 4 of 10.
  stopped = make_member(root / 'vgg11', tiny_model_config(11), [2.0, 1.5, 1.6, 1.7],
                        num_epochs=10, patience=2, checkpoint=True)
  # Epoch 3 improves by only 0.05 < min_delta 0.1, so epoch 2 stays the best; all 3 epochs run.
  finished = make_member(root / 'vgg16_c11', tiny_model_config(16, conv1x1=True),
                         [2.0, 1.5, 1.45], num_epochs=3, patience=5, min_delta=0.1)
  return {'a': stopped, 'c': finished}


def members_config(members):
  config = ensemble_config.get_config()
  config.members = tuple((name, str(path)) for name, path in members.items())
  return config


def test_replay_early_stopping():
  stopper = summary.replay_early_stopping(history_rows([2.0, 1.5, 1.6, 1.7]), patience=2)
  assert (stopper.best_epoch, stopper.should_stop) == (2, True)
  stopper = summary.replay_early_stopping(history_rows([2.0, 1.5, 1.45]), patience=5,
                                          min_delta=0.1)
  assert (stopper.best_epoch, stopper.should_stop) == (2, False)


def test_parameters_come_from_the_best_checkpoint(members):
  expected = models.count_params(abstract_params(tiny_model_config(11))['params'])
  assert checkpointing.count_parameters(members['a']) == expected
  assert checkpointing.count_parameters(members['c']) is None  # No best/ checkpoint.


def test_summary_files(members, tmp_path):
  rows = summary.summarize_members(members_config(members), str(tmp_path))
  with open(tmp_path / 'summary.csv', newline='') as f:
    written = list(csv.DictReader(f))
  assert list(written[0]) == list(summary.COLUMNS)
  a, c = written
  parameters = models.count_params(abstract_params(tiny_model_config(11))['params'])
  assert a == {'name': 'a', 'depth': '11', 'conv1x1': 'False', 'parameters': str(parameters),
               'epochs': '4', 'best_epoch': '2', 'train_loss': '2.8', 'train_accuracy': '0.2',
               'val_loss': '1.5', 'val_accuracy': '0.1', 'val_top5_accuracy': '0.2',
               'stopped_early': 'True', 'training_seconds': '40.0',
               'workdir': str(members['a'])}
  assert (c['name'], c['depth'], c['conv1x1'], c['parameters'], c['epochs'], c['best_epoch'],
          c['val_loss'], c['stopped_early'], c['training_seconds']) == (
              'c', '16', 'True', '', '3', '2', '1.5', 'False', '30.0')
  assert [row['name'] for row in rows] == ['a', 'c']

  lines = (tmp_path / 'summary.md').read_text().splitlines()
  assert lines[0] == '| ' + ' | '.join(summary.MARKDOWN_HEADERS) + ' |'
  assert lines[2] == (f'| a | 11 | no | {parameters:,} | 4 | 2 | 2.8000 | 0.2000 | 1.5000 | '
                      '0.1000 | 0.2000 | yes | 0:00:40 |')
  assert lines[3] == ('| c | 16 | yes | - | 3 | 2 | 2.8000 | 0.2000 | 1.5000 | 0.1000 | '
                      '0.2000 | no | 0:00:30 |')
  assert len(lines) == 4

  with Image.open(tmp_path / 'plots' / 'summary_val_accuracy.png') as image:
    assert image.format == 'PNG'
    assert image.size == (700, 450)
  assert sorted(p.name for p in tmp_path.rglob('*')) == [
      'plots', 'summary.csv', 'summary.md', 'summary_val_accuracy.png']


def test_member_without_history_is_named(members, tmp_path):
  untrained = tmp_path / 'vgg13'
  untrained.mkdir()
  config = members_config({'a': members['a'], '13': untrained})
  out = tmp_path / 'out'
  with pytest.raises(FileNotFoundError) as raised:
    summary.summarize_members(config, str(out))
  assert str(raised.value) == (f"member '13': {untrained} holds no history.csv; train it "
                               f'first: python main.py --config=configs/vgg13.py '
                               f'--workdir={untrained}')
  assert not out.exists()


def test_missing_member_workdir_is_named(tmp_path):
  config = members_config({'19': tmp_path / 'runs' / 'vgg19'})
  with pytest.raises(FileNotFoundError, match=r"^member '19': workdir .*vgg19 does not exist; "
                     r'train it first: python main.py --config=configs/vgg19.py'):
    summary.summarize_members(config, str(tmp_path / 'out'))


@pytest.mark.slow
def test_main_summary_uses_the_ensemble_config_by_default(tmp_path):
  # The five members of configs/ensemble.py, relative to the working directory.
  for depth, name in ((11, 'vgg11'), (13, 'vgg13'), (16, 'vgg16'), (16, 'vgg16_c11'),
                      (19, 'vgg19')):
    make_member(tmp_path / 'runs' / name, tiny_model_config(depth, name == 'vgg16_c11'),
                [2.0, 1.0 + depth / 100], num_epochs=2, patience=3)
  result = subprocess.run([sys.executable, str(REPO / 'main.py'), '--mode=summary',
                           '--workdir=runs/ensemble'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / 'runs' / 'ensemble' / 'summary.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert [(r['name'], r['depth'], r['conv1x1'], r['best_epoch']) for r in rows] == [
      ('11', '11', 'False', '2'), ('13', '13', 'False', '2'), ('16', '16', 'False', '2'),
      ('16_C11', '16', 'True', '2'), ('19', '19', 'False', '2')]
  assert (tmp_path / 'runs' / 'ensemble' / 'plots' / 'summary_val_accuracy.png').is_file()
