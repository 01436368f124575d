"""Resuming a workdir with another `batch_size` is refused in one line; nothing is touched.

A resumed run continues the saved step count, learning-rate schedule and data order, all
counted in batches of the saved size; `grad_accum_steps` is the way to fit that size into
less memory.
"""

import json
import os
import shutil

import pytest

from configs import default
from vgg_flax.workdir import config as configuration
from vgg_flax import train
from vgg_flax.workdir import files


def refused_message(workdir, saved, now):
  return (f'{workdir} resumes a run trained with batch_size={saved}, not {now}: use '
          f'--config.batch_size={saved} (grad_accum_steps to fit it in less memory) or a new '
          '--workdir.')


def files_and_times(workdir):
  """Every path in the workdir but its lock, with its modification time."""
  return {path: os.path.getmtime(path) for path in workdir.rglob('*') if path.name != '.lock'}


@pytest.mark.slow  # Trains end to end: the session's two-epoch run, then a resume.
def test_another_batch_size_is_refused_with_the_saved_one(trained_run, make_data_config,
                                                          tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_run.workdir, workdir)
  before = files_and_times(workdir)
  config = make_data_config()
  config.batch_size, config.num_epochs = 8, 3
  with pytest.raises(configuration.ConfigError) as raised:
    train.train_and_evaluate(config, str(workdir))
  assert str(raised.value) == refused_message(workdir, 16, 8)
  assert files_and_times(workdir) == before
  assert (workdir / '.lock').read_text() == ''  # Taken for the check, and released.
  assert [row['epoch'] for row in files.read_history(workdir / 'history.csv')] == [1, 2]


def saved_workdir(tmp_path, batch_size=16, epochs=('1',)):
  """A workdir's config.json (the default config at `batch_size`) and checkpoint folders."""
  saved = default.get_config()
  saved.batch_size = batch_size
  (tmp_path / 'config.json').write_text(json.dumps(configuration.config_to_dict(saved)))
  for epoch in epochs:
    (tmp_path / 'checkpoints' / epoch).mkdir(parents=True)
  return tmp_path


def test_the_same_batch_size_and_other_micro_batches_resume(tmp_path):
  workdir = saved_workdir(tmp_path)
  config = default.get_config()
  config.batch_size = 16
  configuration.check_workdir_compatible(config, workdir)
  config.grad_accum_steps = 4  # The same batch in micro-batches: the same run.
  config.eval_batch_size = 8  # Evaluation counts every image once at any batch size.
  configuration.check_workdir_compatible(config, workdir)


def test_without_a_finished_epoch_any_batch_size_starts_afresh(tmp_path):
  """A run killed before its first checkpoint left only config.json (and perhaps an orbax
  temporary): there is nothing to resume, so nothing to keep consistent."""
  workdir = saved_workdir(tmp_path, epochs=('1.orbax-checkpoint-tmp-0',))
  config = default.get_config()
  config.batch_size = 32
  configuration.check_workdir_compatible(config, workdir)


def test_a_workdir_with_a_checkpoint_refuses_another_batch_size(tmp_path):
  workdir = saved_workdir(tmp_path)
  config = default.get_config()
  config.batch_size = 32
  with pytest.raises(configuration.ConfigError) as raised:
    configuration.check_workdir_compatible(config, workdir)
  assert str(raised.value) == refused_message(workdir, 16, 32)
