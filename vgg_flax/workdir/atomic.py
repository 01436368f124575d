"""Writes that never leave a half-written file: results, CSVs, JSON, PNGs."""

import csv
import errno
import glob
import json
import os
import pathlib
import tempfile
from typing import Callable, Iterable

from vgg_flax.workdir import disk


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> None:
  """Calls `write(tmp_path)` then renames the file to `path`: never a half-written result.

  The data reaches the disk before the rename, so a power loss leaves the old file or the
  new one, never an empty one. Temporaries that killed processes left for `path` are removed.

  Raises:
    disk.StorageError: the disk is full, read-only or not writable (one line).
  """
  path = pathlib.Path(path)
  tmp = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = _new_temporary(path)
    write(tmp)
    if not tmp.stat().st_size:  # No result is an empty file; keep the old one.
      raise FileNotFoundError(errno.ENOENT, 'the writer wrote nothing', str(tmp))
    with open(tmp, 'rb+') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as error:
    if tmp is not None:
      tmp.unlink(missing_ok=True)
    if isinstance(error, OSError) and disk.is_storage_failure(error, written=path.parent):
      raise disk.StorageError(f'cannot write {path}: {disk.describe(error)}; free space '
                              '(or make it writable) and run again.') from error
    raise


def _new_temporary(path: pathlib.Path) -> pathlib.Path:
  """A new empty file beside `path`: same folder (so the rename is atomic), hidden, named
  with this process's pid (for `_remove_stale_temporaries`) and a random part, and created
  exclusively, so a file or link planted under a predictable name is never written through.
  """
  fd, name = tempfile.mkstemp(prefix=f'.{path.stem}.{os.getpid()}.', suffix=f'.tmp{path.suffix}',
                              dir=path.parent)
  os.close(fd)
  return pathlib.Path(name)


def _remove_stale_temporaries(path: pathlib.Path) -> None:
  """Deletes `write_atomically` temporaries of `path` whose process no longer runs."""
  for tmp in path.parent.glob(f'.{glob.escape(path.stem)}.*.tmp{glob.escape(path.suffix)}'):
    pid = tmp.name[len(path.stem) + 2:].split('.')[0]
    if pid.isdigit() and int(pid) != os.getpid() and not _is_running(int(pid)):
      tmp.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Someone else's live process.
  return True


def write_json(path: str | os.PathLike, data: dict) -> None:
  """Writes `data` as indented JSON, atomically."""
  write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + '\n'))


def write_csv(path: str | os.PathLike, header: Iterable[str], rows: Iterable[Iterable]) -> None:
  """Writes a CSV with a header row, atomically."""
  def write(tmp: pathlib.Path) -> None:
    with tmp.open('w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(list(header))
      writer.writerows(rows)
  write_atomically(path, write)
