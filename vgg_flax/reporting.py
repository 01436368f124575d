"""What a run writes for people, always atomically: results, `history.csv` and the plots."""

import csv
import glob
import json
import os
import pathlib
from typing import Callable, Iterable

import matplotlib

matplotlib.use('Agg')  # Files only: training hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vgg_flax import storage  # pylint: disable=g-import-not-at-top

HISTORY_FIELDS = ('epoch', 'train_loss', 'train_accuracy', 'train_top5_accuracy', 'val_loss',
                  'val_accuracy', 'val_top5_accuracy', 'learning_rate', 'seconds')


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> None:
  """Calls `write(tmp_path)` then renames the file to `path`: never a half-written result.

  The data reaches the disk before the rename, so a power loss leaves the old file or the
  new one, never an empty one. Temporaries that killed processes left for `path` are removed.

  Raises:
    storage.StorageError: the disk is full, read-only or not writable (one line).
  """
  path = pathlib.Path(path)
  # Same folder (so the rename is atomic), hidden, and unique to this process.
  tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp{path.suffix}')
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    write(tmp)
    with open(tmp, 'rb+') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as error:
    tmp.unlink(missing_ok=True)
    if isinstance(error, OSError) and storage.is_storage_failure(error, written=path.parent):
      raise storage.StorageError(f'cannot write {path}: {storage.describe(error)}; free space '
                                 '(or make it writable) and run again.') from error
    raise


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


def write_history(path: str | pathlib.Path, history: list[dict]) -> None:
  """Rewrites `history.csv`: one row an epoch, the columns of `HISTORY_FIELDS`."""
  def write(tmp: pathlib.Path) -> None:
    with tmp.open('w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction='ignore')
      writer.writeheader()
      writer.writerows(history)
  write_atomically(path, write)


def read_history(path: str | pathlib.Path) -> list[dict]:
  """Reads `history.csv` back, numbers as floats (epoch as int)."""
  with pathlib.Path(path).open(newline='') as f:
    rows = list(csv.DictReader(f))
  return [{k: int(v) if k == 'epoch' else float(v) for k, v in row.items()} for row in rows]


def _plot(history: list[dict], metric: str, label: str, path: pathlib.Path) -> None:
  epochs = [row['epoch'] for row in history]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(epochs, [row[f'train_{metric}'] for row in history], marker='o', label='train')
  ax.plot(epochs, [row[f'val_{metric}'] for row in history], marker='o', label='validation')
  ax.set_xlabel('epoch')
  ax.set_ylabel(label)
  ax.set_title(f'{label}: train vs validation')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format='png'))
  plt.close(fig)


def write_plots(plot_dir: str | pathlib.Path, history: list[dict]) -> None:
  """Redraws `loss.png` and `accuracy.png` (train vs validation, one line each)."""
  plot_dir = pathlib.Path(plot_dir)
  plot_dir.mkdir(parents=True, exist_ok=True)
  _plot(history, 'loss', 'loss', plot_dir / 'loss.png')
  _plot(history, 'accuracy', 'top-1 accuracy', plot_dir / 'accuracy.png')
