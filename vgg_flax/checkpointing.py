"""Orbax checkpoints of a workdir: `checkpoints/` (latest, to resume) and `best/` (predict).

`checkpoints/<epoch>/` holds the whole training state plus the host loop's JSON state (early
stopping counters, history), so a resumed run continues exactly. `best/<epoch>/` holds only
the model variables (params and BatchNorm statistics) of the epoch with the lowest validation
loss, plus the same JSON; evaluation, prediction and converted PyTorch models use it.

Both keep the `max_to_keep` newest epochs (two by default), so a damaged newest checkpoint
(truncated, corrupt, files missing) falls back to the one before: `restore_latest` and
`restore_best_variables` warn and move the damaged one to `<workdir>/damaged/`. Orbax writes
each checkpoint into a temporary folder and renames it when complete; temporaries left by a
killed run are ignored, and removed when the workdir is next trained.
"""

import os
import pathlib
import sys
import threading
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from vgg_flax import storage

LATEST_DIR = 'checkpoints'
BEST_DIR = 'best'
DAMAGED_DIR = 'damaged'


class CheckpointError(RuntimeError):
  """No checkpoint of a folder can be restored; the message says how to start over."""


def _manager(path: pathlib.Path, max_to_keep: int, items: tuple[str, ...],
             read_only: bool = False) -> ocp.CheckpointManager:
  # Readers open with create=False rather than read_only=True, which only adds warnings.
  # The barrier prefix keeps the processes' sync points of `checkpoints/` and `best/` apart:
  # both save the same epoch number, and equal barrier names would collide.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=path.name))
  return ocp.CheckpointManager(path.absolute(), options=options, item_names=items)


def _tree_bytes(tree: Any) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, 'nbytes'))


def _move_aside(manager: ocp.CheckpointManager, epoch: int) -> pathlib.Path:
  """Moves a damaged `<dir>/<epoch>` to `<workdir>/damaged/` (kept for a look, not used)."""
  folder = pathlib.Path(manager.directory)
  stamp = time.strftime('%Y%m%d-%H%M%S')
  target = folder.parent / DAMAGED_DIR / f'{folder.name}_{epoch}_{stamp}'
  if jax.process_index() == 0:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder / str(epoch), target)
  manager.reload()
  return target


def _is_closed_loop_error(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'


def _silence_abandoned_reads() -> None:
  """Keeps the reads a failed restore abandons from printing tracebacks (from now on).

  When orbax gives up on a damaged checkpoint, TensorStore still completes the reads it
  started, during and after the failed restore, and calls back into the restore's event
  loop, which is closed by then: each callback prints an 'Event loop is closed' traceback.
  They say nothing the warning does not; any other error is printed as before.
  """
  if getattr(sys.excepthook, 'drops_closed_loop_errors', False):
    return
  hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)

  def excepthook(kind, error, trace):
    if not _is_closed_loop_error(error):
      hooks[0](kind, error, trace)

  def thread_excepthook(args):
    if not _is_closed_loop_error(args.exc_value):
      hooks[1](args)

  def unraisablehook(unraisable):
    if not _is_closed_loop_error(unraisable.exc_value):
      hooks[2](unraisable)

  excepthook.drops_closed_loop_errors = True
  sys.excepthook, threading.excepthook, sys.unraisablehook = (
      excepthook, thread_excepthook, unraisablehook)


def _restore_newest(manager: ocp.CheckpointManager, restore: Callable[[int], Any],
                    move_damaged: bool, start_over: str) -> Any:
  """`restore(epoch)` of the newest epoch that restores, newest first.

  A checkpoint that fails to restore is reported (and moved aside when `move_damaged`), and
  the one before is tried. A failure of every one is a `CheckpointError`, unless all fail
  alike because the checkpoints do not fit the model asked for: that error is re-raised.
  `start_over` ends the message, e.g. 'use a new --workdir'.
  """
  folder = pathlib.Path(manager.directory)
  failures = []
  # Before the first restore: a damaged checkpoint's abandoned reads can print while orbax is
  # still failing, before its error reaches the `except` below.
  _silence_abandoned_reads()
  for epoch in sorted(manager.all_steps(), reverse=True):
    try:
      restored = restore(epoch)
    except Exception as error:  # pylint: disable=broad-except
      # Orbax raises many kinds (JSON, Unicode, TensorStore, KeyError) for damaged files.
      failures.append((epoch, error))
      logging.warning('%s/%d cannot be restored (%s: %s); trying the checkpoint before it.',
                      folder, epoch, type(error).__name__, str(error).split('\n')[0][:200])
      continue
    for damaged, _ in failures:
      if move_damaged:
        logging.warning('Moved the damaged %s/%d to %s.', folder, damaged,
                        _move_aside(manager, damaged))
    if failures:
      logging.warning('Using %s/%d instead.', folder, epoch)
    return epoch, restored
  if failures and all(_is_mismatch(e) for _, e in failures):
    raise failures[0][1]
  newest, error = failures[0]
  raise CheckpointError(
      f'{folder}: no checkpoint can be restored (newest, epoch {newest}: '
      f'{type(error).__name__}: {str(error).splitlines()[0][:150]}); {start_over}.')


def _is_mismatch(error: Exception) -> bool:
  """Orbax's error for a checkpoint of another model shape, not a damaged one."""
  text = str(error)
  return isinstance(error, ValueError) and not isinstance(error, UnicodeError) and any(
      s in text for s in ('shape', 'Shape', 'structure', 'Dict key mismatch'))


class WorkdirCheckpoints:
  """The two checkpoint managers of a training workdir."""

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 2):
    workdir = pathlib.Path(workdir)
    self.latest = _manager(workdir / LATEST_DIR, max_to_keep, ('state', 'loop'))
    self.best = _manager(workdir / BEST_DIR, max_to_keep, ('variables', 'loop'))

  def save_latest(self, epoch: int, state: Any, loop: dict) -> None:
    """Saves the whole train state and the loop state after `epoch`."""
    storage.check_free_space(self.latest.directory, _tree_bytes(state),
                             f'the checkpoint of epoch {epoch}')
    self.latest.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)))

  def save_best(self, epoch: int, variables: dict, loop: dict) -> None:
    """Saves the model variables of the best epoch so far."""
    storage.check_free_space(self.best.directory, _tree_bytes(variables),
                             f'the best checkpoint (epoch {epoch})')
    self.best.save(epoch, args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables), loop=ocp.args.JsonSave(loop)))

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """The newest restorable (state, loop), or None for a fresh workdir.

    A damaged newest checkpoint is moved to `<workdir>/damaged/` and the one before is
    used; `best/` checkpoints of later epochs are dropped too (the resumed run makes them
    again, equal, when it replays those epochs).

    Args:
      abstract_state: a pytree of `jax.ShapeDtypeStruct`s (with shardings) like the state.

    Raises:
      CheckpointError: checkpoints exist but none can be restored.
    """
    if self.latest.latest_step() is None:
      return None
    epoch, restored = _restore_newest(self.latest, lambda step: self.latest.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      loop=ocp.args.JsonRestore())), move_damaged=True,
        start_over=f'to start over, train in a new --workdir (or delete '
                   f'{pathlib.Path(self.latest.directory).parent})')
    self.drop_epochs_after(epoch)
    return restored.state, restored.loop

  def drop_epochs_after(self, epoch: int) -> None:
    """Deletes checkpoints of epochs after `epoch` (left by a run that died mid-save)."""
    for manager in (self.latest, self.best):
      later = [step for step in manager.all_steps() if step > epoch]
      for step in later:
        logging.warning('Deleting %s/%d: newer than the epoch resumed from; it is made again.',
                        manager.directory, step)
        manager.delete(step)
      if later:
        manager.reload()

  def wait_until_finished(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases the managers."""
    self.latest.close()
    self.best.close()


def save_best_variables(workdir: str | pathlib.Path, variables: dict, loop: dict,
                        epoch: int = 0) -> None:
  """Writes `variables` as a workdir's `best/` checkpoint (used by model conversion)."""
  manager = _manager(pathlib.Path(workdir) / BEST_DIR, 1, ('variables', 'loop'))
  manager.save(epoch, args=ocp.args.Composite(
      variables=ocp.args.StandardSave(variables), loop=ocp.args.JsonSave(loop)))
  manager.wait_until_finished()
  manager.close()


def has_best_checkpoint(workdir: str | pathlib.Path) -> bool:
  """Whether a workdir holds a finished `best/` checkpoint."""
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    return False
  manager = _manager(path, 1, ('variables', 'loop'), read_only=True)
  found = manager.latest_step() is not None
  manager.close()
  return found


def restore_best_variables(workdir: str | pathlib.Path,
                           abstract_variables: Any) -> tuple[dict, dict]:
  """The (variables, loop) of a workdir's `best/` checkpoint.

  When the newest `best/` checkpoint cannot be restored, the one before it is used, with a
  warning (nothing is moved: evaluation and prediction only read the workdir).

  Args:
    workdir: a training (or converted) workdir.
    abstract_variables: `jax.eval_shape` of the model's init, to restore onto.

  Raises:
    FileNotFoundError: when the workdir holds no `best/` checkpoint.
    CheckpointError: `best/` checkpoints exist but none can be restored.
  """
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    raise FileNotFoundError(f'{path} does not exist: train this workdir first.')
  manager = _manager(path, 1, ('variables', 'loop'), read_only=True)
  try:
    if manager.latest_step() is None:
      raise FileNotFoundError(f'{path} holds no finished checkpoint: train this workdir first.')
    _, restored = _restore_newest(manager, lambda step: manager.restore(
        step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(abstract_variables),
                                      loop=ocp.args.JsonRestore())), move_damaged=False,
        start_over=f'train {workdir} again, or in a new --workdir')
  finally:
    manager.close()
  return jax.tree.map(lambda x: x, restored.variables), restored.loop
