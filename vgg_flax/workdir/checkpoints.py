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

import math
import os
import pathlib
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from vgg_flax.workdir import abandoned_reads
from vgg_flax.workdir import disk
from vgg_flax.workdir import files

LATEST_DIR = files.LATEST_DIR
BEST_DIR = files.BEST_DIR
# The items of a checkpoint: the arrays (`state` in checkpoints/, `variables` in best/) and
# the host loop's JSON.
LATEST_ITEMS = ('state', 'loop')
BEST_ITEMS = ('variables', 'loop')


class CheckpointError(RuntimeError):
  """No checkpoint of a folder can be restored; the message says how to start over."""


class MismatchError(ValueError):
  """The checkpoints hold arrays of another structure or shape than the model asked for."""


def _manager(path: pathlib.Path, max_to_keep: int, items: tuple[str, ...],
             read_only: bool = False) -> ocp.CheckpointManager:
  """A manager of `items` (arrays, then the loop's JSON) in `path`."""
  # Readers open with create=False rather than read_only=True, which only adds warnings.
  # The barrier prefix keeps the processes' sync points of `checkpoints/` and `best/` apart:
  # both save the same epoch number, and equal barrier names would collide.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=path.name))
  arrays, loop = items
  # Handlers named up front, so a checkpoint's metadata can be read before any restore.
  return ocp.CheckpointManager(
      path.absolute(), options=options,
      item_handlers={arrays: ocp.StandardCheckpointHandler(),
                     loop: ocp.JsonCheckpointHandler()})


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """'a/b/c' -> shape of every leaf (arrays, ShapeDtypeStructs or orbax's metadata)."""
  return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_fits(manager: ocp.CheckpointManager, epoch: int, item: str, target: Any) -> None:
  """Raises `MismatchError` when `epoch`'s stored arrays do not fit `target`.

  Compared from the checkpoint's metadata before anything is read: orbax reports such a
  restore only through its message text.
  """
  stored = _shapes(manager.item_metadata(epoch)[item])
  wanted = _shapes(target)
  if stored == wanted:
    return
  if missing := sorted(set(wanted) - set(stored)):
    raise MismatchError(f'the checkpoint lacks {missing[0]}'
                        + (f' and {len(missing) - 1} more' if len(missing) > 1 else ''))
  if extra := sorted(set(stored) - set(wanted)):
    raise MismatchError(f'the checkpoint has {extra[0]}, which the model lacks'
                        + (f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''))
  name = next(k for k in sorted(wanted) if wanted[k] != stored[k])
  raise MismatchError(f'{name} has shape {stored[name]} in the checkpoint, the model wants '
                      f'{wanted[name]}')


def best_epoch_of(loop: dict) -> int:
  """The epoch a `best/` checkpoint was saved after (0 for a converted one)."""
  return int(loop['early_stopping']['best_epoch'] if 'early_stopping' in loop else loop['epoch'])


def _tree_bytes(tree: Any) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, 'nbytes'))


def _move_aside(manager: ocp.CheckpointManager, epoch: int) -> pathlib.Path:
  """Moves a damaged `<dir>/<epoch>` to `<workdir>/damaged/` (kept for a look, not used)."""
  folder = pathlib.Path(manager.directory)
  stamp = time.strftime('%Y%m%d-%H%M%S')
  target = folder.parent / files.DAMAGED_DIR / f'{folder.name}_{epoch}_{stamp}'
  if jax.process_index() == 0:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder / str(epoch), target)
  manager.reload()
  return target


def _restore_newest(manager: ocp.CheckpointManager, restore: Callable[[int], Any], item: str,
                    target: Any, move_damaged: bool, start_over: str) -> Any:
  """`restore(epoch)` of the newest epoch that restores, newest first.

  A checkpoint that fails to restore is reported (and moved aside when `move_damaged`), and
  the one before is tried. A failure of every one is a `CheckpointError`, unless all fail
  alike because the checkpoints do not fit `target`, the model asked for (`MismatchError`).
  `start_over` ends the message, e.g. 'use a new --workdir'.
  """
  folder = pathlib.Path(manager.directory)
  failures = []
  # Before the first read: abandoned reads finish while orbax is still raising.
  abandoned_reads.quiet()
  for epoch in sorted(manager.all_steps(), reverse=True):
    try:
      if target is not None:
        _check_fits(manager, epoch, item, target)
      restored = restore(epoch)
    except Exception as error:  # pylint: disable=broad-except
      # Orbax raises many kinds (JSON, Unicode, TensorStore, KeyError) for damaged files:
      # whatever it raises, the checkpoint before may still restore.
      abandoned_reads.restore_failed()
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
  if failures and all(isinstance(e, MismatchError) for _, e in failures):
    raise failures[0][1]
  newest, error = failures[0]
  raise CheckpointError(
      f'{folder}: no checkpoint can be restored (newest, epoch {newest}: '
      f'{type(error).__name__}: {str(error).splitlines()[0][:150]}); {start_over}.')


class WorkdirCheckpoints:
  """The two checkpoint managers of a training workdir."""

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 2):
    workdir = pathlib.Path(workdir)
    self.latest = _manager(workdir / LATEST_DIR, max_to_keep, LATEST_ITEMS)
    self.best = _manager(workdir / BEST_DIR, max_to_keep, BEST_ITEMS)

  def save_latest(self, epoch: int, state: Any, loop: dict) -> None:
    """Saves the whole train state and the loop state after `epoch`."""
    disk.check_free_space(self.latest.directory, _tree_bytes(state),
                             f'the checkpoint of epoch {epoch}')
    self.latest.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)))

  def save_best(self, epoch: int, variables: dict, loop: dict) -> None:
    """Saves the model variables of the best epoch so far."""
    disk.check_free_space(self.best.directory, _tree_bytes(variables),
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
                                      loop=ocp.args.JsonRestore())), 'state', abstract_state,
        move_damaged=True,
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
  manager = _manager(pathlib.Path(workdir) / BEST_DIR, 1, BEST_ITEMS)
  manager.save(epoch, args=ocp.args.Composite(
      variables=ocp.args.StandardSave(variables), loop=ocp.args.JsonSave(loop)))
  manager.wait_until_finished()
  manager.close()


def has_best_checkpoint(workdir: str | pathlib.Path) -> bool:
  """Whether a workdir holds a finished `best/` checkpoint."""
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    return False
  manager = _manager(path, 1, BEST_ITEMS, read_only=True)
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
    MismatchError: they hold another model than `abstract_variables`.
  """
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    raise FileNotFoundError(f'{path} does not exist: train this workdir first.')
  manager = _manager(path, 1, BEST_ITEMS, read_only=True)
  try:
    if manager.latest_step() is None:
      raise FileNotFoundError(f'{path} holds no finished checkpoint: train this workdir first.')
    _, restored = _restore_newest(manager, lambda step: manager.restore(
        step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(abstract_variables),
                                      loop=ocp.args.JsonRestore())), 'variables',
        abstract_variables, move_damaged=False,
        start_over=f'train {workdir} again, or in a new --workdir')
  finally:
    manager.close()
  return jax.tree.map(lambda x: x, restored.variables), restored.loop


def count_parameters(workdir: str | pathlib.Path) -> int | None:
  """Trainable parameters in a workdir's newest `best/` checkpoint, from its stored shapes.

  Reads only the checkpoint's metadata (no arrays, no model), so the count is that of the
  network actually trained, whatever its number of classes. None without a `best/`.
  """
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    return None
  manager = _manager(path, 1, BEST_ITEMS, read_only=True)
  try:
    step = manager.latest_step()
    if step is None:
      return None
    variables = manager.item_metadata(step)['variables']
    return sum(math.prod(shape) for name, shape in _shapes(variables).items()
               if name.startswith('params/'))
  finally:
    manager.close()
