"""Keeps the reads orbax abandons in a failed restore from printing a traceback each.

Orbax restores every array of a checkpoint concurrently and ends its event loop at the first
failure (a damaged or missing data file). The other reads still finish, after the restore
has raised, and each reports its own failure:
- a read coroutine nobody awaits any more raises when it is collected, and a read that
  TensorStore completes from its own thread finds the loop closed ("Event loop is closed"):
  Python passes both to `sys.unraisablehook`, which prints a traceback;
- a task or future whose exception nobody retrieved is logged by asyncio's `asyncio` logger
  at ERROR ("Task exception was never retrieved"), with the traceback of orbax's read, of
  asyncio's own wrapper around a TensorStore future, or none (a TensorStore error set on
  the future, never raised in Python).
The failure itself is already one warning line per checkpoint (`workdir.checkpoints`), so
`quiet()` sends these to the debug log; anything else reaches the hook and the log as before.
Orbax has no public way to wait for the abandoned reads (docs/design.md).
"""

import logging as pylogging
import os
import sys
import traceback

from absl import logging

_ORBAX = f'{os.sep}orbax{os.sep}'
_failed_restores: list[bool] = []  # Non-empty once a restore of this process has failed.


def _is_read_in_orbax(filename: str, function: str) -> bool:
  return _ORBAX in filename and ('read' in function or 'deserialize' in function)


def is_abandoned_read(error: BaseException | None, source: object = None) -> bool:
  """Whether `error` (raised in `source`, if given) comes from a read of orbax's restore.

  That is, orbax's read or deserialize code raised it, or it is asyncio's "Event loop is
  closed" (the loop of a restore that has already failed).
  """
  code = getattr(source, 'cr_code', None)  # An un-awaited coroutine.
  if code is not None and _is_read_in_orbax(code.co_filename, code.co_name):
    return True
  frames = traceback.extract_tb(error.__traceback__) if error is not None else []
  if frames and frames[-1].name == '_check_closed' and (
      f'{os.sep}asyncio{os.sep}' in frames[-1].filename):
    return True
  return any(_is_read_in_orbax(frame.filename, frame.name) for frame in frames)


def restore_failed() -> None:
  """Notes that a restore failed: from then on, asyncio's error reports are its reads'.

  Nothing of the project runs asyncio but orbax, and only a failed restore abandons its
  tasks; orbax reports a failed save itself.
  """
  _failed_restores.append(True)


class _AsyncioRecords(pylogging.Filter):
  """Drops asyncio's "exception was never retrieved" records of abandoned reads."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
      return True
    if is_abandoned_read(error) or _failed_restores:
      logging.debug('An abandoned checkpoint read failed: %s', error)
      return False
    return True


def quiet() -> None:
  """Routes the abandoned reads of failed restores to the debug log, once per process.

  Put in front of the `sys.unraisablehook` there was, and as a filter of the `asyncio`
  logger; other unraisable exceptions and records pass unchanged.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'quiets_abandoned_reads', False):
    return

  def hook(unraisable):
    if is_abandoned_read(unraisable.exc_value, unraisable.object):
      logging.debug('An abandoned checkpoint read failed: %s', unraisable.exc_value)
    else:
      previous(unraisable)

  hook.quiets_abandoned_reads = True
  sys.unraisablehook = hook
  pylogging.getLogger('asyncio').addFilter(_AsyncioRecords())
