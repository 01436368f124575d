"""Disk trouble in a workdir (full, read-only, no permission) as one line, not a traceback.

A full disk shows up in many places: Python's `OSError`, TensorStore's `ValueError` from an
orbax save thread, TensorFlow's event writer. `storage_errors` turns each into a
`StorageError` naming the path and the cause; `check_free_space` refuses a checkpoint that
cannot fit before orbax starts writing it, so the checkpoints already there stay intact.
"""

import contextlib
import errno
import os
import pathlib
import re
import shutil
from typing import Iterator

# Errors that mean "this disk cannot take the write", whatever raised them.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# Errors that mean it when they name a path being written (a source can be unreadable too).
FORBIDDEN = (errno.EACCES, errno.EPERM)
STORAGE_ERRNOS = FULL_OR_READ_ONLY + FORBIDDEN
# Room left beside an estimate: metadata files and the file system's own blocks.
SPARE_BYTES = 1 << 18
# TensorStore (orbax's array storage) raises a ValueError whose absl status carries the OS
# error as a payload, printed as `[os_error_code='28']`.
_TENSORSTORE_ERRNO = re.compile(r"\[os_error_code='(\d+)'\]")


class StorageError(RuntimeError):
  """The workdir's disk refused a write; the message names the path and how to go on."""


def errno_of(error: BaseException) -> int | None:
  """The OS error number `error` carries, whichever library raised it, or None.

  Python gives `OSError.errno`. TensorStore and TensorFlow have no attribute for it: one
  adapter each reads it where that library puts it (tests/test_write_atomically.py pins
  both against the installed versions).
  """
  if isinstance(error, OSError):
    return error.errno
  if isinstance(error, ValueError):
    match = _TENSORSTORE_ERRNO.search(str(error))
    if match:
      return int(match.group(1))
  if _is_tensorflow_op_error(error):
    # TensorFlow's `OpError` ends its message with the OS's own text for the error.
    text = str(error)
    return next((code for code in STORAGE_ERRNOS if os.strerror(code) in text), None)
  return None


def _is_tensorflow_op_error(error: BaseException) -> bool:
  """Whether `error` is a `tf.errors.OpError` (without importing TensorFlow here)."""
  return any(cls.__module__.startswith('tensorflow') and cls.__name__ == 'OpError'
             for cls in type(error).__mro__)


def _causes(error: BaseException | None) -> Iterator[BaseException]:
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def is_storage_failure(error: BaseException, written: str | os.PathLike | None = None) -> bool:
  """Whether `error` (or what caused it) is a full, read-only or forbidden disk.

  Args:
    error: what was raised.
    written: the file or folder being written; a permission error counts only for a path
      inside it (None: any path).
  """
  for cause in _causes(error):
    code = errno_of(cause)
    if code in FULL_OR_READ_ONLY:
      return True
    if code in FORBIDDEN and (written is None or _inside(getattr(cause, 'filename', None),
                                                         written)):
      return True
  return False


def _inside(path: str | os.PathLike | None, folder: str | os.PathLike) -> bool:
  if path is None:
    return False
  path, folder = pathlib.Path(path).absolute(), pathlib.Path(folder).absolute()
  return path == folder or folder in path.parents


def describe(error: BaseException) -> str:
  """The cause in a few words, e.g. '[Errno 28] No space left on device'."""
  for cause in _causes(error):
    code = errno_of(cause)
    if code in STORAGE_ERRNOS:
      return f'[Errno {code}] {os.strerror(code)}'
  return 'write failed'


@contextlib.contextmanager
def storage_errors(workdir: str | os.PathLike) -> Iterator[None]:
  """Re-raises a disk failure inside the block as a one-line `StorageError`."""
  try:
    yield
  except StorageError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    if not is_storage_failure(error, written=workdir):
      raise
    path = getattr(error, 'filename', None) or workdir
    raise StorageError(
        f'cannot write {path}: {describe(error)}. The checkpoints already in {workdir} are '
        'intact: free space (or make it writable) and rerun the same command to resume.'
    ) from error


def check_free_space(path: str | os.PathLike, needed_bytes: int, what: str) -> None:
  """Raises `StorageError` unless `path`'s disk has room for `needed_bytes` more.

  Args:
    path: a folder on the disk to write to (its nearest existing parent is measured).
    needed_bytes: the size of what is about to be written.
    what: what is written, for the message.
  """
  path = pathlib.Path(path)
  existing = next(p for p in (path, *path.parents) if p.exists())
  free = shutil.disk_usage(existing).free
  if free < needed_bytes + SPARE_BYTES:
    raise StorageError(
        f'cannot write {what} to {path}: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)} '
        f'(needs about {(needed_bytes + SPARE_BYTES) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB '
        'free). The checkpoints already there are intact: free space and rerun the same '
        'command to resume.')
