"""Runs a mode of `main.py`, and names the errors that are the user's to fix.

What `main.py` does once its flags are parsed and checked lives here, so the entry point
stays a few lines: quieting the libraries' INFO chatter, the compilation cache, running the
mode, and turning a user error into one line and an exit status.
"""

import logging as pylogging
import os
import pathlib
import sys

import jax
import ml_collections
from absl import logging

from input_pipeline import pipeline
from vgg_flax import train
from vgg_flax.cli import compile_cache
from vgg_flax.errors import ConfigError
from vgg_flax.modes import ensemble
from vgg_flax.modes import one_model
from vgg_flax.modes import results_table
from vgg_flax.train import interrupts
from vgg_flax.train import loop
from vgg_flax.workdir import checkpoints
from vgg_flax.workdir import disk
from vgg_flax.workdir import lock

# Mistakes a user can fix from the message alone: main.py prints one line, no traceback.
USER_ERRORS = (ConfigError, pipeline.DataError, loop.NonFiniteLossError, FileNotFoundError,
               lock.WorkdirBusyError,  # Another run holds the workdir.
               checkpoints.CheckpointError,  # No checkpoint of a folder restores.
               disk.StorageError,  # Disk full, read-only or not writable.
               interrupts.Interrupted)  # SIGTERM or Ctrl-C: stopped at a step boundary.
# Libraries whose INFO lines say nothing to a user (several a checkpoint); warnings stay.
QUIET_LIBRARIES = ('orbax', 'tensorflow_datasets', 'clu')


def exit_code(error: Exception) -> int:
  """2 for a bad config or bad data (nothing ran), 1 for a run that failed.

  A run stopped by a signal exits as shells report it: 128 + the signal (143 for SIGTERM).
  """
  if isinstance(error, interrupts.Interrupted):
    return error.exit_code
  if isinstance(error, (lock.WorkdirBusyError, ConfigError, pipeline.DataError,
                        FileNotFoundError)):
    return 2
  return 1


def exit_with_error(error: Exception, status: int = 2) -> None:
  """Prints the one-line error and exits with its status."""
  print(f'error: {error}', file=sys.stderr)
  sys.exit(status)


class _QuietLibraries(pylogging.Filter):
  """Drops the INFO lines of `QUIET_LIBRARIES`; keeps their warnings."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    noisy = any(f'{os.sep}{name}{os.sep}' in record.pathname for name in QUIET_LIBRARIES)
    return record.levelno >= pylogging.WARNING or not noisy


def default_workdir(config_path: str) -> str:
  """runs/<config file stem>, e.g. runs/vgg16_c11 for configs/vgg16_c11.py."""
  return str(pathlib.Path('runs') / pathlib.Path(config_path.split(':')[0]).stem)


def run(mode: str, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Runs one mode of main.py."""
  if mode == 'train':
    train.train_and_evaluate(config, workdir, hooks=[compile_cache.LogTimeToFirstStep()])
  elif mode == 'evaluate':
    one_model.evaluate_workdir(config, workdir)
  elif mode == 'predict':
    one_model.predict_workdir(config, workdir)
  elif mode == 'predict_ensemble':
    ensemble.predict_ensemble(config, workdir)
  elif mode == 'summary':
    results_table.summarize_members(config, workdir)
  else:
    raise ConfigError(f'--mode={mode!r} is not one of train, evaluate, predict, '
                      f'predict_ensemble, summary.')


def main(mode: str, config: ml_collections.ConfigDict, workdir: str) -> None:
  """What main.py does once its flags are parsed, its processes connected and a training
  config checked."""
  logging.get_absl_handler().addFilter(_QuietLibraries())
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    compile_cache.enable_compilation_cache(config)
    run(mode, config, workdir)
  except USER_ERRORS as error:
    exit_with_error(error, exit_code(error))
