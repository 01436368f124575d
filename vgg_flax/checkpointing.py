"""Orbax checkpoints of a workdir: `checkpoints/` (latest, to resume) and `best/` (predict).

`checkpoints/<epoch>/` holds the whole training state plus the host loop's JSON state (early
stopping counters, history), so a resumed run continues exactly. `best/<epoch>/` holds only
the model variables (params and BatchNorm statistics) of the epoch with the lowest validation
loss, plus the same JSON; evaluation, prediction and converted PyTorch models use it.
"""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

LATEST_DIR = 'checkpoints'
BEST_DIR = 'best'


def _manager(path: pathlib.Path, max_to_keep: int, items: tuple[str, ...],
             read_only: bool = False) -> ocp.CheckpointManager:
  # Readers open with create=False rather than read_only=True, which only adds warnings.
  # The barrier prefix keeps the processes' sync points of `checkpoints/` and `best/` apart:
  # both save the same epoch number, and equal barrier names would collide.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=path.name))
  return ocp.CheckpointManager(path.absolute(), options=options, item_names=items)


class WorkdirCheckpoints:
  """The two checkpoint managers of a training workdir."""

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 1):
    workdir = pathlib.Path(workdir)
    self.latest = _manager(workdir / LATEST_DIR, max_to_keep, ('state', 'loop'))
    self.best = _manager(workdir / BEST_DIR, 1, ('variables', 'loop'))

  def save_latest(self, epoch: int, state: Any, loop: dict) -> None:
    """Saves the whole train state and the loop state after `epoch`."""
    self.latest.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)))

  def save_best(self, epoch: int, variables: dict, loop: dict) -> None:
    """Saves the model variables of the best epoch so far."""
    self.best.save(epoch, args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables), loop=ocp.args.JsonSave(loop)))

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """The latest (state, loop) or None for a fresh workdir.

    Args:
      abstract_state: a pytree of `jax.ShapeDtypeStruct`s (with shardings) like the state.
    """
    epoch = self.latest.latest_step()
    if epoch is None:
      return None
    restored = self.latest.restore(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), loop=ocp.args.JsonRestore()))
    return restored.state, restored.loop

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

  Args:
    workdir: a training (or converted) workdir.
    abstract_variables: `jax.eval_shape` of the model's init, to restore onto.

  Raises:
    FileNotFoundError: when the workdir holds no `best/` checkpoint.
  """
  path = pathlib.Path(workdir) / BEST_DIR
  if not path.is_dir():
    raise FileNotFoundError(f'{path} does not exist: train this workdir first.')
  manager = _manager(path, 1, ('variables', 'loop'), read_only=True)
  epoch = manager.latest_step()
  if epoch is None:
    manager.close()
    raise FileNotFoundError(f'{path} holds no finished checkpoint: train this workdir first.')
  restored = manager.restore(epoch, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(abstract_variables), loop=ocp.args.JsonRestore()))
  manager.close()
  return jax.tree.map(lambda x: x, restored.variables), restored.loop
