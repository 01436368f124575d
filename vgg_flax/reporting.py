"""What a run writes for people, always atomically: results, `history.csv`, plots, image grids."""

import csv
import glob
import json
import math
import os
import pathlib
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: training hosts have no display.
import matplotlib.figure  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import PIL.Image  # pylint: disable=g-import-not-at-top
import PIL.ImageDraw  # pylint: disable=g-import-not-at-top
import PIL.ImageFont  # pylint: disable=g-import-not-at-top

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


def short_words(words: str) -> str:
  """The first name of a `words.txt` entry: 'goldfish, Carassius auratus' -> 'goldfish'."""
  return words.split(',')[0].strip()


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
  # A bare Figure with fixed margins: no pyplot state, and no tight_layout pass, which took a
  # third of the 0.5 s that the two plots cost each epoch (on the 2-core AMD EPYC).
  fig = matplotlib.figure.Figure(figsize=(6, 4))
  fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.92)
  ax = fig.add_subplot()
  ax.plot(epochs, [row[f'train_{metric}'] for row in history], marker='o', label='train')
  ax.plot(epochs, [row[f'val_{metric}'] for row in history], marker='o', label='validation')
  ax.set_xlabel('epoch')
  ax.set_ylabel(label)
  ax.set_title(f'{label}: train vs validation')
  ax.grid(alpha=0.3)
  ax.legend()
  write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format='png'))


def write_plots(plot_dir: str | pathlib.Path, history: list[dict]) -> None:
  """Redraws `loss.png` and `accuracy.png` (train vs validation, one line each)."""
  plot_dir = pathlib.Path(plot_dir)
  plot_dir.mkdir(parents=True, exist_ok=True)
  _plot(history, 'loss', 'loss', plot_dir / 'loss.png')
  _plot(history, 'accuracy', 'top-1 accuracy', plot_dir / 'accuracy.png')


# --- Image grids (data samples, predictions): one array for the PNG and for TensorBoard ----
# Drawn with PIL, not matplotlib: a 16-image grid takes milliseconds instead of a second.

GRID_COLUMNS = 4
GRID_IMAGE_PX = 128  # Each image is scaled (nearest neighbour) to this side.
GRID_TITLE_PX = 30  # Room for a two-line title above each image.
GRID_CELL_PX = (GRID_IMAGE_PX + 48, GRID_TITLE_PX + GRID_IMAGE_PX + 8)  # (width, height)
GRID_FONT_SIZE = 11


def grid_shape(num_images: int) -> tuple[int, int]:
  """(rows, columns) of the grid that `draw_image_grid` lays `num_images` out on."""
  columns = min(GRID_COLUMNS, num_images)
  return math.ceil(num_images / GRID_COLUMNS), columns


def grid_font() -> PIL.ImageFont.FreeTypeFont:
  """The titles' font (Pillow's own, so no system fonts are needed)."""
  return PIL.ImageFont.load_default(size=GRID_FONT_SIZE)


def fit_text(text: str, width: int, font=None) -> str:
  """`text`, cut and ended with '…' where it is wider than `width` pixels."""
  font = font or grid_font()
  if font.getlength(text) <= width:
    return text
  while text and font.getlength(text + '\u2026') > width:
    text = text[:-1]
  return text.rstrip() + '\u2026'


def draw_image_grid(images: np.ndarray, titles: Sequence[str],
                    title_colors: Sequence[str] | None = None) -> np.ndarray:
  """Draws images in a grid, row by row, each under its title.

  Args:
    images: uint8 (N, H, W, 3) images, N >= 1.
    titles: one title per image (at most two lines; a line too wide for its cell is cut).
    title_colors: one colour ('#rrggbb' or a name) per title; None = black.

  Returns:
    The drawing as a uint8 (rows * GRID_CELL_PX[1], columns * GRID_CELL_PX[0], 3) RGB
    array: the same pixels go to a PNG (`write_png`) and to TensorBoard.
  """
  rows, columns = grid_shape(len(images))
  cell_w, cell_h = GRID_CELL_PX
  canvas = PIL.Image.new('RGB', (columns * cell_w, rows * cell_h), 'white')
  draw = PIL.ImageDraw.Draw(canvas)
  font = grid_font()
  colors = title_colors or ['black'] * len(images)
  for i, (image, title, color) in enumerate(zip(images, titles, colors)):
    row, column = divmod(i, columns)
    left, top = column * cell_w, row * cell_h
    title = '\n'.join(fit_text(line, cell_w - 6, font) for line in title.split('\n'))
    draw.multiline_text((left + cell_w / 2, top + 2), title, fill=color, font=font,
                        anchor='ma', align='center', spacing=2)
    tile = PIL.Image.fromarray(np.asarray(image, np.uint8)).resize(
        (GRID_IMAGE_PX, GRID_IMAGE_PX), PIL.Image.NEAREST)
    canvas.paste(tile, (left + (cell_w - GRID_IMAGE_PX) // 2, top + GRID_TITLE_PX))
  return np.asarray(canvas)


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
  """Writes a uint8 (H, W, 3) array as a PNG, atomically."""
  image = PIL.Image.fromarray(pixels)
  write_atomically(path, lambda tmp: image.save(tmp, format='PNG', optimize=True))
