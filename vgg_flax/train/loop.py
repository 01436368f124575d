"""The host loop: epochs, exact evaluation, early stopping, checkpoints and logs.

The jitted math lives in `vgg_flax.core.steps`; this module decides what happens between
steps.
"""

import contextlib
import dataclasses
import math
import pathlib
import signal
import sys
import time
from typing import Callable, Iterable

import jax
import ml_collections
from absl import logging

from input_pipeline import image_folder
from input_pipeline import pipeline
from vgg_flax import plots
from vgg_flax.core import factory
from vgg_flax.core import models
from vgg_flax.core import sharding
from vgg_flax.core import steps
from vgg_flax.train import init_from
from vgg_flax.train import interrupts
from vgg_flax.train import tensorboard_log
from vgg_flax.train.early_stopping import EarlyStopping
from vgg_flax.workdir import atomic
from vgg_flax.workdir import checkpoints as workdir_checkpoints
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import disk
from vgg_flax.workdir import files
from vgg_flax.workdir import lock

with pipeline.lazy_tensorflow():  # clu's periodic actions import TensorFlow: at first use.
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


@dataclasses.dataclass
class LoopState:
  """What the host loop must remember across a restart (saved with each checkpoint)."""
  epoch: int
  early_stopping: EarlyStopping
  history: list[dict]

  def to_json(self) -> dict:
    return {'epoch': self.epoch, 'early_stopping': self.early_stopping.state_dict(),
            'history': self.history}

  @classmethod
  def fresh(cls, config: ml_collections.ConfigDict) -> 'LoopState':
    stopper = EarlyStopping(patience=config.early_stopping.patience,
                            min_delta=config.early_stopping.min_delta)
    return cls(epoch=0, early_stopping=stopper, history=[])

  @classmethod
  def from_json(cls, config: ml_collections.ConfigDict, saved: dict) -> 'LoopState':
    loop = cls.fresh(config)
    loop.early_stopping.load_state_dict(saved['early_stopping'])
    return cls(epoch=int(saved['epoch']), early_stopping=loop.early_stopping,
               history=list(saved['history']))


@dataclasses.dataclass(frozen=True)
class Trainer:
  """What a run trains with, built once by `create_trainer`; the train state is kept apart.

  Attributes:
    config: the run's config.
    dataset: the run's data, opened once (`pipeline.Dataset`): every batch comes from it.
    compiled: the model, mesh, schedule, shardings and jitted steps (`core.factory`).
    steps_per_epoch: optimizer steps an epoch.
  """
  config: ml_collections.ConfigDict
  dataset: pipeline.Dataset
  compiled: factory.Compiled
  steps_per_epoch: int

  @property
  def mesh(self) -> jax.sharding.Mesh:
    return self.compiled.mesh

  @property
  def info(self) -> pipeline.DatasetInfo:
    return self.dataset.info


def create_trainer(config: ml_collections.ConfigDict,
                   dataset: pipeline.Dataset | None = None) -> tuple[Trainer, steps.TrainState]:
  """Builds the model, the jitted steps and the initial train state for a config.

  Args:
    config: the run's config.
    dataset: the run's data; None opens (and if needed prepares) `config`'s.

  Returns:
    The trainer and the initial state (the train step donates it: keep only the newest).
  """
  dataset = pipeline.open_dataset(config) if dataset is None else dataset
  info = dataset.info
  steps_per_epoch = pipeline.train_steps_per_epoch(config, info)
  compiled, state = factory.create(config, num_classes=info.num_classes,
                                   steps_per_epoch=steps_per_epoch)
  return Trainer(config=config, dataset=dataset, compiled=compiled,
                 steps_per_epoch=steps_per_epoch), state


def evaluate_split(trainer: Trainer, state: steps.TrainState, split: str) -> dict[str, float]:
  """Loss, top-1 and top-5 accuracy over a whole split, every example counted once.

  The eval step's log-probabilities stay on the devices; only the merged metrics are read.
  """
  merged = steps.evaluate_batches(
      trainer.compiled.eval_step, steps.model_variables(state),
      trainer.dataset.eval_batches(trainer.config, split), trainer.mesh,
      on_batch=lambda batch, log_probs: interrupts.check())
  if merged is None:
    raise pipeline.DataError(f'split {split!r} is empty: nothing to evaluate.')
  return steps.computed(merged)


def _progress_bar(config, total: int, epoch: int):
  """A tqdm bar on an interactive terminal of process 0, else None (one line an epoch)."""
  if not (config.progress_bar and sys.stderr.isatty() and jax.process_index() == 0):
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, desc=f'epoch {epoch}', unit='step', leave=False)


def _check_finite(loss: float, step: int, what: str = 'training') -> None:
  if not math.isfinite(loss):
    raise NonFiniteLossError(
        f'{what} loss is {loss} at step {step}; stopped. The checkpoints of the last '
        f'finished epoch are kept: lower learning_rate or check the data.')


def train_epoch(trainer: Trainer, state: steps.TrainState, epoch: int, writer,
                hooks: Iterable[Callable]) -> tuple[steps.TrainState, dict[str, float]]:
  """One pass over this epoch's batches; returns the new state and the epoch's metrics.

  Metrics stay on the device and are merged there; the host reads them only every
  `log_every_steps` steps (to write TensorBoard scalars and check the loss is finite).
  """
  config = trainer.config
  batch_sharding = sharding.data_sharding(trainer.mesh)
  epoch_metrics = window_metrics = None
  bar = _progress_bar(config, trainer.steps_per_epoch, epoch)
  # Counted on the host: reading `state.step` would wait for each step to finish.
  step = int(state.step)
  for batch in trainer.dataset.train_batches(config, epoch=epoch):
    state, step_metrics = trainer.compiled.train_step(
        state, sharding.to_global_batch(batch, batch_sharding))
    epoch_metrics = step_metrics if epoch_metrics is None else epoch_metrics.merge(step_metrics)
    window_metrics = (step_metrics if window_metrics is None
                      else window_metrics.merge(step_metrics))
    step += 1
    for hook in hooks:
      hook(step)
    if bar is not None:
      bar.update(1)
    if step % config.log_every_steps == 0:
      scalars = window_metrics.compute()
      _check_finite(float(scalars['loss']), step)
      writer.write_scalars(step, scalars)
      window_metrics = None
      if bar is not None:
        bar.set_postfix(loss=f'{float(scalars["loss"]):.3f}')
  if bar is not None:
    bar.close()
  summary = {k: float(v) for k, v in epoch_metrics.compute().items()}
  _check_finite(summary['loss'], int(state.step))
  return state, summary


def _history_row(epoch: int, train: dict, val: dict, seconds: float) -> dict:
  return {'epoch': epoch, 'train_loss': train['loss'], 'train_accuracy': train['accuracy'],
          'train_top5_accuracy': train['top5_accuracy'], 'val_loss': val['loss'],
          'val_accuracy': val['accuracy'], 'val_top5_accuracy': val['top5_accuracy'],
          'learning_rate': train['learning_rate'], 'seconds': round(seconds, 3)}


def _log_epoch(row: dict, loop: LoopState, improved: bool) -> None:
  logging.info(
      'epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f top5 %.4f | %.1fs%s',
      row['epoch'], row['train_loss'], row['train_accuracy'], row['val_loss'],
      row['val_accuracy'], row['val_top5_accuracy'], row['seconds'],
      ' (best)' if improved else f' ({loop.early_stopping.bad_epochs} without improvement)')


def _write_epoch_reports(workdir: pathlib.Path, run_summaries, loop: LoopState, state,
                         improved: bool) -> None:
  """TensorBoard (every process takes part), `history.csv` and the plots (process 0)."""
  run_summaries.write_epoch(loop, state, improved)
  if jax.process_index() == 0:
    files.write_history(workdir / files.HISTORY_FILE, loop.history)
    plots.write_training_curves(workdir / files.PLOTS_DIR, loop.history)


def _restore_or_start(trainer: Trainer, initial: steps.TrainState,
                      checkpoints) -> tuple[steps.TrainState, LoopState]:
  """The latest checkpoint's state and loop, else `initial` (or `init_from`'s weights)."""
  compiled = trainer.compiled
  restored = checkpoints.restore_latest(compiled.abstract_state(initial))
  source = trainer.config.init_from
  if restored is None:
    state = initial
    if source:
      state = init_from.start_from(trainer.config, compiled.model, state,
                                   compiled.state_sharding)
    return state, LoopState.fresh(trainer.config)
  state, loop_json = restored
  loop = LoopState.from_json(trainer.config, loop_json)
  logging.info('Resuming after epoch %d (step %d).', loop.epoch, int(state.step))
  if source:
    logging.info("init_from=%s not used: the workdir's checkpoint wins (resuming).", source)
  return state, loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       hooks: Iterable[Callable[[int], None]] = ()) -> steps.TrainState:
  """Trains with early stopping on the validation loss; resumes an existing workdir.

  Args:
    config: a config from `configs/` (see `configs/default.py` for the fields).
    workdir: where checkpoints, TensorBoard events, `history.csv` and plots go.
    hooks: called with the step number after each train step, beside the loop's own
      (progress, profiling, stop requests).

  Returns:
    The train state after the last epoch run.
  """
  run_config.validate_config(config)
  workdir = pathlib.Path(workdir)
  with disk.storage_errors(workdir), _one_run_per_workdir(workdir):
    return _train_in_locked_workdir(config, workdir, tuple(hooks))


def _train_in_locked_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                             extra_hooks: tuple) -> steps.TrainState:
  run_config.check_workdir_compatible(config, workdir)
  trainer, initial = create_trainer(config)
  if jax.process_index() == 0:
    run_config.write_config(workdir, config)
    if held_out := image_folder.held_out_rows(trainer.dataset.builder):  # An image folder's.
      atomic.write_csv(workdir / files.HELD_OUT_FILE, image_folder.HELD_OUT_COLUMNS, held_out)
  checkpoints = workdir_checkpoints.WorkdirCheckpoints(workdir,
                                                       max_to_keep=config.max_checkpoints)
  state, loop = _restore_or_start(trainer, initial, checkpoints)
  del initial  # Restored or donated to the first step: not to be used again.
  _forget_unsaved_epochs(workdir, loop, int(state.step))
  run_summaries = tensorboard_log.open_run(workdir, trainer, loop)
  hooks = [*extra_hooks, *_create_hooks(config, trainer, workdir, run_summaries.progress)]
  logging.info('VGG-%d%s, %s parameters, %d classes, %d steps an epoch of %d images, on %d '
               'devices; workdir %s', config.model.depth, ' (1x1)' if config.model.conv1x1
               else '', f'{models.count_params(state.params):,}', trainer.info.num_classes,
               trainer.steps_per_epoch, config.batch_size, jax.device_count(), workdir)
  try:
    with interrupts.stop_at_step_boundary():
      state = _run_epochs(trainer, state, loop, checkpoints, run_summaries, hooks, workdir)
  except interrupts.Interrupted as stop:
    raise _explain_stop(stop, loop, workdir) from None
  finally:
    checkpoints.wait_until_finished()
    checkpoints.close()
    run_summaries.close()
  return state


def _create_hooks(config, trainer: Trainer, workdir: pathlib.Path, writer) -> list:
  total_steps = config.num_epochs * trainer.steps_per_epoch
  hooks = [periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_secs=60.0),
           lambda step: interrupts.check()]
  if config.profile and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(num_profile_steps=5, logdir=str(workdir)))
  return hooks


def _run_epochs(trainer: Trainer, state, loop: LoopState, checkpoints, run_summaries, hooks,
                workdir: pathlib.Path) -> steps.TrainState:
  config = trainer.config
  for epoch in range(loop.epoch + 1, config.num_epochs + 1):
    if loop.early_stopping.should_stop:
      break
    interrupts.check()
    start = time.perf_counter()
    state, train_summary = train_epoch(trainer, state, epoch, run_summaries.per_step, hooks)
    val_summary = evaluate_split(trainer, state, config.eval_split)
    _check_finite(val_summary['loss'], int(state.step), 'validation')
    row = _history_row(epoch, train_summary, val_summary, time.perf_counter() - start)
    improved = loop.early_stopping.update(epoch, row['val_loss'])
    loop.epoch = epoch
    loop.history.append(row)
    _write_epoch_reports(workdir, run_summaries, loop, state, improved)
    if improved:
      checkpoints.save_best(epoch, steps.model_variables(state), loop.to_json())
    checkpoints.save_latest(epoch, state, loop.to_json())
    _log_epoch(row, loop, improved)
  if loop.early_stopping.should_stop:
    logging.info('Early stopping after epoch %d: best val loss %.4f at epoch %d.', loop.epoch,
                 loop.early_stopping.best_loss, loop.early_stopping.best_epoch)
  return state


# --- Faults: one run per workdir, signals, and what a killed run left behind ----------------


@contextlib.contextmanager
def _one_run_per_workdir(workdir: pathlib.Path):
  """Holds `<workdir>/.lock` for the run (process 0; the others share its workdir)."""
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() > 0:
    yield
    return
  with lock.WorkdirLock(workdir):
    yield


def _explain_stop(stop: interrupts.Interrupted, loop: LoopState,
                  workdir: pathlib.Path) -> interrupts.Interrupted:
  """Logs what a signal stopped and returns the one-line error for main.py."""
  name = signal.Signals(stop.signum).name
  if loop.epoch:
    kept = (f'{workdir} keeps the checkpoint of epoch {loop.epoch}: rerun the same command '
            f'to resume (epoch {loop.epoch + 1} starts over)')
  else:
    kept = f'no epoch was finished yet: rerun the same command to start {workdir} again'
  logging.warning('Stopped by %s during epoch %d at a step boundary; %s.', name,
                  loop.epoch + 1, kept)
  return interrupts.Interrupted(stop.signum, f'stopped by {name} during epoch '
                                f'{loop.epoch + 1}; {kept}.')


def _forget_unsaved_epochs(workdir: pathlib.Path, loop: LoopState, step: int) -> None:
  """Drops what a killed run reported past the checkpoint resumed from (process 0).

  `history.csv` is rewritten from the checkpoint's history, and TensorBoard events after
  the checkpoint's step (per-step scalars) or epoch (epoch scalars and images) are removed
  from the event files: the replayed epochs write them again, so each epoch shows once in
  every reader.
  """
  if jax.process_index() > 0:
    return
  if (workdir / files.HISTORY_FILE).exists():
    files.write_history(workdir / files.HISTORY_FILE, loop.history)
  tensorboard_log.drop_events_after(workdir, step=step, epoch=loop.epoch)
