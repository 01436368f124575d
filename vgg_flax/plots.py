"""Every figure a run writes, drawn one way.

Charts are bare matplotlib `Figure`s (no pyplot: no global figure state, no backend to
choose at import) saved atomically; image grids, Grad-CAM's heat maps among them, are drawn
with PIL into one array that goes both to a PNG and to TensorBoard. Callers compute what to
show; this module only draws.
"""

import math
import os
import pathlib
from typing import Sequence

from matplotlib import colormaps
from matplotlib import colors
from matplotlib import figure
from matplotlib import ticker
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from vgg_flax.workdir import atomic

CHART_DPI = 100
# The confusion figure of --mode=evaluate: the matrix and the most frequent mistakes.
CONFUSION_INCHES = (16, 8)
# Classes up to this many get their names on the confusion matrix's axes.
MAX_LABELLED_CLASSES = 40


def short_words(words: str) -> str:
  """The first name of a `words.txt` entry: 'goldfish, Carassius auratus' -> 'goldfish'."""
  return words.split(',')[0].strip()


def save_figure(fig: figure.Figure, path: str | os.PathLike) -> None:
  """Writes a chart as a PNG, atomically."""
  atomic.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=CHART_DPI, format='png'))


# --- Charts -------------------------------------------------------------------------------


def _train_vs_validation(history: list[dict], metric: str, label: str,
                         path: pathlib.Path) -> None:
  epochs = [row['epoch'] for row in history]
  # Fixed margins, no tight_layout pass: that pass took a third of the 0.5 s the two plots
  # cost each epoch (2-core AMD EPYC).
  fig = figure.Figure(figsize=(6, 4))
  fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.92)
  ax = fig.add_subplot()
  ax.plot(epochs, [row[f'train_{metric}'] for row in history], marker='o', label='train')
  ax.plot(epochs, [row[f'val_{metric}'] for row in history], marker='o', label='validation')
  ax.set_xlabel('epoch')
  ax.set_ylabel(label)
  ax.set_title(f'{label}: train vs validation')
  ax.grid(alpha=0.3)
  ax.legend()
  save_figure(fig, path)


def write_training_curves(plot_dir: str | pathlib.Path, history: list[dict]) -> None:
  """Redraws `loss.png` and `accuracy.png` (train vs validation, one line each)."""
  plot_dir = pathlib.Path(plot_dir)
  plot_dir.mkdir(parents=True, exist_ok=True)
  _train_vs_validation(history, 'loss', 'loss', plot_dir / 'loss.png')
  _train_vs_validation(history, 'accuracy', 'top-1 accuracy', plot_dir / 'accuracy.png')


def draw_confusion(path: str | os.PathLike, normalised: np.ndarray, names: Sequence[str],
                   pairs: Sequence[tuple[str, int]]) -> None:
  """The two-panel confusion figure of `--mode=evaluate`.

  Args:
    path: the PNG to write.
    normalised: the row-normalised confusion matrix, rows and columns in display order.
    names: the class words in that order.
    pairs: ('true -> predicted', count) of the most frequent mistakes, largest first.
  """
  fig = figure.Figure(figsize=CONFUSION_INCHES, dpi=CHART_DPI)
  matrix_ax, pairs_ax = fig.subplots(1, 2, gridspec_kw={'width_ratios': (1.1, 1)})
  # A square-root scale: the few-percent mistakes stay visible beside a bright diagonal.
  shown = matrix_ax.imshow(normalised, cmap='viridis', interpolation='nearest',
                           norm=colors.PowerNorm(gamma=0.5, vmin=0, vmax=1))
  fig.colorbar(shown, ax=matrix_ax, fraction=0.046, pad=0.04, label='fraction of the row')
  n = len(names)
  if n <= MAX_LABELLED_CLASSES:
    matrix_ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    matrix_ax.set_yticks(range(n), names, fontsize=7)
  matrix_ax.set_xlabel('predicted class (same order as the rows)')
  matrix_ax.set_ylabel('true class by top-1 rank (0 = best)')
  matrix_ax.set_title(f'Confusion, {n} classes ordered by top-1 accuracy')
  pairs = list(pairs)[::-1]  # Largest bar at the top.
  pairs_ax.barh(range(len(pairs)), [count for _, count in pairs], color='tab:red')
  pairs_ax.set_yticks(range(len(pairs)), [label for label, _ in pairs], fontsize=8)
  pairs_ax.set_xlabel('images of the true class given the predicted one')
  pairs_ax.set_title(f'The {len(pairs)} most frequent mistakes (true -> predicted)')
  fig.tight_layout()
  save_figure(fig, path)


def draw_member_curves(path: str | os.PathLike, histories: dict[str, list[dict]],
                       best_epochs: dict[str, int]) -> None:
  """Every member's validation top-1 per epoch on one chart, its best epoch starred."""
  fig = figure.Figure(figsize=(7, 4.5))
  ax = fig.add_subplot()
  for name, history in histories.items():
    epochs = [row['epoch'] for row in history]
    accuracy = [row['val_accuracy'] for row in history]
    line, = ax.plot(epochs, accuracy, marker='o', markersize=3, label=name)
    best = epochs.index(best_epochs[name])
    ax.plot(epochs[best], accuracy[best], marker='*', markersize=12, color=line.get_color())
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_xlabel('epoch')
  ax.set_ylabel('validation top-1 accuracy')
  ax.set_title('Validation accuracy of the members (star: best epoch, lowest val loss)')
  ax.grid(alpha=0.3)
  ax.legend(title='member')
  fig.tight_layout()
  save_figure(fig, path)


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


def grid_size(num_images: int) -> tuple[int, int]:
  """(width, height) in pixels of the grid of `num_images` images."""
  rows, columns = grid_shape(num_images)
  return columns * GRID_CELL_PX[0], rows * GRID_CELL_PX[1]


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
  atomic.write_atomically(path, lambda tmp: image.save(tmp, format='PNG', optimize=True))


# --- Heat maps (Grad-CAM): image grids of an image and its maps over it --------------------

HEAT_COLOUR_MAP = 'jet'  # The Grad-CAM paper's: red = strong evidence, blue = none.
HEAT_OVERLAY_WEIGHT = 0.5  # Share of the colour map in an overlay; the rest is the image.
STRIPS_PER_ROW = 2  # Strips side by side in a grid of strips.


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
  """A heat map (H, W), scaled to its maximum and coloured, over a uint8 (H, W, 1 or 3) image."""
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  peak = float(heat.max())
  scaled = heat / peak if peak > 0 else np.zeros_like(heat)
  coloured = colormaps[HEAT_COLOUR_MAP](scaled)[..., :3] * 255
  return np.clip((1 - HEAT_OVERLAY_WEIGHT) * image + HEAT_OVERLAY_WEIGHT * coloured, 0,
                 255).astype(np.uint8)


def draw_heat_maps(image: np.ndarray, heat_maps: Sequence[np.ndarray], titles: Sequence[str],
                   title_colors: Sequence[str]) -> np.ndarray:
  """One image's strip: the image, then each heat map over it, each cell under its title.

  Args:
    image: uint8 (H, W, 1 or 3).
    heat_maps: (H, W) maps, any non-negative scale.
    titles, title_colors: one for the image and one for each map.

  Returns:
    The strip as `draw_image_grid` draws it (one row of 1 + len(heat_maps) cells).
  """
  rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
  cells = [rgb] + [heat_overlay(image, heat) for heat in heat_maps]
  return draw_image_grid(np.stack(cells), titles, title_colors)


def join_strips(strips: Sequence[np.ndarray], per_row: int = STRIPS_PER_ROW) -> np.ndarray:
  """Strips (as `draw_heat_maps` draws them) side by side, `per_row` a row, padded white."""
  height = max(s.shape[0] for s in strips)
  width = max(s.shape[1] for s in strips)
  padded = [np.pad(s, ((0, height - s.shape[0]), (0, width - s.shape[1]), (0, 0)),
                   constant_values=255) for s in strips]
  padded += [np.full_like(padded[0], 255)] * (-len(padded) % per_row)
  rows = [np.concatenate(padded[i:i + per_row], axis=1)
          for i in range(0, len(padded), per_row)]
  return np.concatenate(rows, axis=0)
