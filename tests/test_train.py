"""The host loop end to end on the generated sample: files, resume, early stopping, errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from vgg_flax.workdir import checkpoints as checkpointing
from vgg_flax.train import loop as train
from vgg_flax.workdir import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every test trains end to end (in process, or main.py in a subprocess).
pytestmark = pytest.mark.slow


def params_of(state):
  return jax.tree.map(np.asarray, (state.params, state.batch_stats, state.opt_state))


@pytest.fixture(scope='module')
def two_epoch_run(trained_run, make_data_config):
  """An uninterrupted two-epoch run (the reference for resume and the file checks)."""
  return make_data_config(), trained_run.workdir, params_of(trained_run.state)


def test_workdir_holds_every_artifact(two_epoch_run):
  _, workdir, _ = two_epoch_run
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['model']['depth'] == 11 and saved['model']['width'] == 8
  history = files.read_history(workdir / 'history.csv')
  assert [row['epoch'] for row in history] == [1, 2]
  assert all(0.0 <= row['val_accuracy'] <= row['val_top5_accuracy'] <= 1.0 for row in history)
  assert all(row['learning_rate'] == pytest.approx(1e-3) for row in history)
  for name in ('loss.png', 'accuracy.png'):
    with Image.open(workdir / 'plots' / name) as image:
      assert image.format == 'PNG' and image.size[0] > 100
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['1', '2']  # The two newest.
  best_epoch = min(history, key=lambda row: row['val_loss'])['epoch']
  # The newest best/ epoch is the best one (the one before is kept as a fallback).
  assert max(map(int, os.listdir(workdir / 'best'))) == best_epoch


def test_tensorboard_holds_the_scalars(two_epoch_run):
  _, workdir, _ = two_epoch_run
  runs = {}
  for run in ('train', 'val'):
    runs[run] = event_accumulator.EventAccumulator(str(workdir / run),
                                                   size_guidance={'tensors': 0})
    runs[run].Reload()
  assert {'per_step/loss', 'per_step/accuracy', 'per_step/top5_accuracy',
          'per_step/learning_rate', 'loss', 'accuracy', 'top5_accuracy'} <= set(
              runs['train'].Tags()['tensors'])
  assert {'loss', 'accuracy', 'top5_accuracy'} <= set(runs['val'].Tags()['tensors'])
  history = files.read_history(workdir / 'history.csv')
  val_losses = [tensor_util.make_ndarray(event.tensor_proto).item()
                for event in runs['val'].Tensors('loss')]
  np.testing.assert_allclose(val_losses, [row['val_loss'] for row in history], rtol=1e-6)
  # 96 training images / batch 16 = 6 steps an epoch, logged every 2 steps; epochs by number.
  assert [e.step for e in runs['train'].Tensors('per_step/loss')] == [2, 4, 6, 8, 10, 12]
  assert [e.step for e in runs['val'].Tensors('loss')] == [1, 2]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(two_epoch_run, tmp_path):
  config, _, reference = two_epoch_run
  config.num_epochs = 1  # Stops after epoch 1, as if interrupted there.
  train.train_and_evaluate(config, str(tmp_path))
  assert files.read_history(tmp_path / 'history.csv')[-1]['epoch'] == 1
  config.num_epochs = 2
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 12
  history = files.read_history(tmp_path / 'history.csv')
  assert [row['epoch'] for row in history] == [1, 2]
  jax.tree.map(np.testing.assert_array_equal, params_of(state), reference)


def test_early_stopping_stops_and_keeps_the_best_epoch(data_config, tmp_path, monkeypatch):
  val_losses = iter([2.0, 1.5, 1.7, 1.8, 1.0, 0.5])
  monkeypatch.setattr(train, 'evaluate_split', lambda *_: {
      'loss': next(val_losses), 'accuracy': 0.5, 'top5_accuracy': 1.0})
  data_config.num_epochs = 6
  data_config.steps_per_epoch = 1
  data_config.early_stopping.patience = 2
  state = train.train_and_evaluate(data_config, str(tmp_path))
  history = files.read_history(tmp_path / 'history.csv')
  assert [row['val_loss'] for row in history] == [2.0, 1.5, 1.7, 1.8]
  assert int(state.step) == 4
  assert sorted(os.listdir(tmp_path / 'best')) == ['1', '2']  # Val losses 2.0 then 1.5.
  # The early-stopping state went into the checkpoint: running again trains no further.
  state = train.train_and_evaluate(data_config, str(tmp_path))
  assert int(state.step) == 4
  assert len(files.read_history(tmp_path / 'history.csv')) == 4


def test_best_checkpoint_holds_the_best_epochs_variables(data_config, tmp_path, monkeypatch):
  val_losses = iter([2.0, 1.0, 3.0])
  saved = {}
  real_evaluate = train.evaluate_split

  def scripted(trainer, state, split):
    result = real_evaluate(trainer, state, split)
    saved[int(state.step)] = jax.tree.map(np.asarray, state.params)
    return dict(result, loss=next(val_losses))

  monkeypatch.setattr(train, 'evaluate_split', scripted)
  data_config.num_epochs = 3
  data_config.steps_per_epoch = 1
  state = train.train_and_evaluate(data_config, str(tmp_path))
  abstract = jax.eval_shape(lambda: {'params': state.params, 'batch_stats': state.batch_stats})
  variables, loop = checkpointing.restore_best_variables(tmp_path, abstract)
  assert loop['epoch'] == 2
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, variables['params']),
               saved[2])


def test_non_finite_loss_stops_and_keeps_checkpoints(data_config, tmp_path, monkeypatch):
  val_losses = iter([2.0, float('nan')])
  real_evaluate = train.evaluate_split
  monkeypatch.setattr(train, 'evaluate_split', lambda *args: dict(
      real_evaluate(*args), loss=next(val_losses)))
  data_config.num_epochs = 3
  data_config.steps_per_epoch = 1
  with pytest.raises(train.NonFiniteLossError, match='validation loss is nan at step 2'):
    train.train_and_evaluate(data_config, str(tmp_path))
  assert os.listdir(tmp_path / 'checkpoints') == ['1']
  assert os.listdir(tmp_path / 'best') == ['1']


def test_main_reports_a_missing_data_source_in_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  missing = tmp_path / 'nowhere'
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/smoke.py', f'--workdir={tmp_path / "w"}',
       f'--config.data_source={missing}', f'--config.data_dir={tmp_path / "d"}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 2, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(error_lines) == 1 and str(missing) in error_lines[0]
  assert not (tmp_path / 'w' / 'checkpoints').exists()  # Nothing trained on no data.
