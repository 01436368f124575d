"""One training run per workdir: a lock file that names its owner.

`<workdir>/.lock` is held with `flock` for the whole run and holds the owner's pid, host and
start time. The kernel drops the lock when its process dies, even by `kill -9`, so a lock
left by a dead run is simply taken over (and logged); a live one makes the second run stop
with a line naming the first.
"""

import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import stat

from absl import logging

LOCK_NAME = '.lock'


class WorkdirBusyError(RuntimeError):
  """Another live process trains in this workdir, or its lock file is not a plain file."""


# What a planted `.lock` may be instead of a regular file, for the message.
_KINDS = ((stat.S_ISLNK, 'a symbolic link'), (stat.S_ISDIR, 'a folder'),
          (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'))


def _open_lock_file(path: pathlib.Path):
  """Opens (creating) the lock file itself: never through a symbolic link, never a folder,
  FIFO or device, so taking the lock cannot write into (or empty) any other file.

  Raises:
    WorkdirBusyError: `.lock` is not a regular file (one line).
    OSError: the workdir cannot be written (the caller's disk-error handling words it).
  """
  flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
  try:
    fd = os.open(path, flags, 0o644)
  except OSError as error:
    # ELOOP: a symbolic link; EISDIR: a folder; ENXIO: a socket. Anything else (a full or
    # read-only disk, no permission) is the disk's error, not a planted file.
    if error.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
      raise
    _refuse(path, os.lstat(path).st_mode)
  mode = os.fstat(fd).st_mode
  if not stat.S_ISREG(mode):
    os.close(fd)
    _refuse(path, mode)
  os.set_blocking(fd, True)
  return os.fdopen(fd, 'a+', encoding='utf-8')


def _refuse(path: pathlib.Path, mode: int) -> None:
  kind = next((name for test, name in _KINDS if test(mode)), 'not a file')
  raise WorkdirBusyError(f'{path} is not a regular file ({kind}): a run keeps its pid there. '
                         'Remove it and run again.')


def _owner_of(lock_file) -> dict:
  lock_file.seek(0)
  try:
    return json.loads(lock_file.read() or '{}')
  except ValueError:
    return {}


def _describe(owner: dict) -> str:
  return (f'process {owner.get("pid", "?")} on host {owner.get("host", "?")} '
          f'(started {owner.get("started", "?")})')


class WorkdirLock:
  """Context manager holding `<workdir>/.lock` while a run writes the workdir."""

  def __init__(self, workdir: str | os.PathLike):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_NAME
    self._file = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def acquire(self) -> None:
    """Takes the lock, or raises `WorkdirBusyError` naming the process that holds it."""
    lock_file = _open_lock_file(self.path)
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = _owner_of(lock_file)
      lock_file.close()
      raise WorkdirBusyError(
          f'{self.workdir} is in use by {_describe(owner)}; wait for it to finish or stop '
          'it, or train in another --workdir.') from None
    previous = _owner_of(lock_file)
    if previous:
      logging.warning('Taking over %s from %s, which ended without releasing it.', self.path,
                      _describe(previous))
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(json.dumps({
        'pid': os.getpid(), 'host': socket.gethostname(),
        'started': datetime.datetime.now().isoformat(timespec='seconds')}) + '\n')
    lock_file.flush()
    self._file = lock_file

  def release(self) -> None:
    """Empties and unlocks the lock file (kept: deleting it would race a new owner)."""
    if self._file is None:
      return
    try:
      self._file.truncate(0)
      self._file.flush()
    except OSError:
      pass  # A full or read-only disk must not hide the error that ended the run.
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    self._file = None
