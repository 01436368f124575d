"""Dispatches `main.py --mode=...` and names the errors that are the user's to fix."""

import ml_collections

from input_pipeline import pipeline
from vgg_flax import checkpointing
from vgg_flax import configuration
from vgg_flax import ensemble
from vgg_flax import interrupts
from vgg_flax import predict
from vgg_flax import storage
from vgg_flax import summary
from vgg_flax import train
from vgg_flax import workdir_lock

# Mistakes a user can fix from the message alone: main.py prints one line, no traceback.
USER_ERRORS = (configuration.ConfigError, pipeline.DataError, train.NonFiniteLossError,
               FileNotFoundError,
               workdir_lock.WorkdirBusyError,  # Another run holds the workdir.
               checkpointing.CheckpointError,  # No checkpoint of a folder restores.
               storage.StorageError,  # Disk full, read-only or not writable.
               interrupts.Interrupted)  # SIGTERM or Ctrl-C: stopped at a step boundary.


def exit_code(error: Exception) -> int:
  """2 for a bad config or bad data (nothing ran), 1 for a run that failed.

  A run stopped by a signal exits as shells report it: 128 + the signal (143 for SIGTERM).
  """
  if isinstance(error, interrupts.Interrupted):
    return error.exit_code
  if isinstance(error, workdir_lock.WorkdirBusyError):
    return 2
  if isinstance(error, (configuration.ConfigError, pipeline.DataError, FileNotFoundError)):
    return 2
  return 1


def run(mode: str, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Runs one mode of main.py."""
  if mode == 'train':
    train.train_and_evaluate(config, workdir)
  elif mode == 'evaluate':
    predict.evaluate_workdir(config, workdir)
  elif mode == 'predict':
    predict.predict_workdir(config, workdir)
  elif mode == 'predict_ensemble':
    ensemble.predict_ensemble(config, workdir)
  elif mode == 'summary':
    summary.summarize_members(config, workdir)
  else:
    raise configuration.ConfigError(f'--mode={mode!r} is not one of train, evaluate, '
                                    f'predict, predict_ensemble, summary.')
