"""What a run writes for people, always atomically: results, `history.csv`, plots, image grids."""

import csv
import json
import math
import os
import pathlib
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: training hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import PIL.Image  # pylint: disable=g-import-not-at-top

HISTORY_FIELDS = ('epoch', 'train_loss', 'train_accuracy', 'train_top5_accuracy', 'val_loss',
                  'val_accuracy', 'val_top5_accuracy', 'learning_rate', 'seconds')


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> None:
  """Calls `write(tmp_path)` then renames the file to `path`: never a half-written result."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # Same folder (so the rename is atomic), hidden, and unique to this process.
  tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp{path.suffix}')
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


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


# --- Image grids (data samples, predictions): one array for the PNG and for TensorBoard ----

GRID_COLUMNS = 4
GRID_CELL_INCHES = (1.9, 1.7)  # Room for an image and a two-line title.
GRID_DPI = 80


def grid_shape(num_images: int) -> tuple[int, int]:
  """(rows, columns) of the grid that `draw_image_grid` lays `num_images` out on."""
  columns = min(GRID_COLUMNS, num_images)
  return math.ceil(num_images / GRID_COLUMNS), columns


def draw_image_grid(images: np.ndarray, titles: Sequence[str],
                    title_colors: Sequence[str] | None = None) -> np.ndarray:
  """Draws images in a grid, row by row, each under its title.

  Args:
    images: uint8 (N, H, W, 3) images, N >= 1.
    titles: one title per image.
    title_colors: one matplotlib colour per title; None = black.

  Returns:
    The drawing as a uint8 (height, width, 3) RGB array: the same pixels go to a PNG
    (`write_png`) and to TensorBoard.
  """
  rows, columns = grid_shape(len(images))
  fig, axes = plt.subplots(rows, columns, squeeze=False, dpi=GRID_DPI,
                           figsize=(columns * GRID_CELL_INCHES[0], rows * GRID_CELL_INCHES[1]))
  colors = title_colors or ['black'] * len(images)
  for ax in axes.flat:
    ax.axis('off')
  for ax, image, title, color in zip(axes.flat, images, titles, colors):
    ax.imshow(image, interpolation='nearest')
    ax.set_title(title, fontsize=8, color=color)
  fig.tight_layout()
  fig.canvas.draw()
  pixels = np.array(fig.canvas.buffer_rgba())[..., :3]
  plt.close(fig)
  return pixels


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
  """Writes a uint8 (H, W, 3) array as a PNG, atomically."""
  image = PIL.Image.fromarray(pixels)
  write_atomically(path, lambda tmp: image.save(tmp, format='PNG', optimize=True))
