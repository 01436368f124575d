"""Per-class results of `--mode=evaluate`: `per_class_accuracy.csv` and `plots/confusion.png`.

With 200 classes a full confusion matrix with labels cannot be read, so the figure has two
panels: the row-normalised matrix with classes ordered by their top-1 accuracy (best first,
so the diagonal fades where the model struggles, and off-diagonal blocks show which of the
weak classes absorb each other), and the most-confused pairs as labelled bars.
"""

import pathlib

import matplotlib
from matplotlib import colors
import numpy as np

matplotlib.use('Agg')  # Files only: evaluation hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vgg_flax import reporting  # pylint: disable=g-import-not-at-top

PER_CLASS_FILE = 'per_class_accuracy.csv'
CONFUSION_FILE = 'confusion.png'
PER_CLASS_COLUMNS = ('class_index', 'wnid', 'class_words', 'images', 'top1_accuracy',
                     'confused_with_index', 'confused_with_wnid', 'confused_with_words',
                     'confused_count')
# Classes up to this many get their names on the matrix's axes.
MAX_LABELLED_CLASSES = 40
TOP_PAIRS = 25
FIGURE_INCHES = (16, 8)
FIGURE_DPI = 100


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """(num_classes, num_classes) counts: row = true class, column = predicted class."""
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (np.asarray(labels), np.asarray(predictions)), 1)
  return confusion


def class_accuracy(confusion: np.ndarray) -> np.ndarray:
  """Top-1 accuracy of each class; NaN for a class without images."""
  images = confusion.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(images > 0, np.diag(confusion) / images, np.nan)


def most_confused_with(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For each class, the wrong class its images are most often given, and how often.

  Returns:
    (class indices, counts); -1 and 0 where no image of the class was mistaken. Ties go to
    the lowest class index.
  """
  mistakes = confusion.copy()
  np.fill_diagonal(mistakes, 0)
  counts = mistakes.max(axis=1)
  return np.where(counts > 0, mistakes.argmax(axis=1), -1), counts


def most_confused_pairs(confusion: np.ndarray, k: int) -> list[tuple[int, int, int]]:
  """The `k` most frequent (true, predicted, count) mistakes, most frequent first."""
  mistakes = confusion.copy()
  np.fill_diagonal(mistakes, 0)
  true, predicted = np.nonzero(mistakes)
  counts = mistakes[true, predicted]
  order = np.lexsort((predicted, true, -counts))[:k]
  return [(int(true[i]), int(predicted[i]), int(counts[i])) for i in order]


def per_class_rows(confusion: np.ndarray, label_names, class_names) -> list[list]:
  """One `PER_CLASS_COLUMNS` row per class, in class-index order."""
  accuracy = class_accuracy(confusion)
  confused, counts = most_confused_with(confusion)
  rows = []
  for index, images in enumerate(confusion.sum(axis=1)):
    other = int(confused[index])
    rows.append([index, label_names[index], class_names[index], int(images),
                 '' if np.isnan(accuracy[index]) else f'{accuracy[index]:.4f}', other,
                 label_names[other] if other >= 0 else '',
                 class_names[other] if other >= 0 else '', int(counts[index])])
  return rows


def _short(words: str) -> str:
  return words.split(',')[0].strip()


def draw_confusion(path: str | pathlib.Path, confusion: np.ndarray, class_names) -> None:
  """Writes the two-panel confusion figure (see the module docstring), atomically."""
  accuracy = np.nan_to_num(class_accuracy(confusion), nan=-1.0)
  order = np.argsort(-accuracy, kind='stable')
  images = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  normalised = (confusion / images)[order][:, order]
  fig, (matrix_ax, pairs_ax) = plt.subplots(
      1, 2, figsize=FIGURE_INCHES, dpi=FIGURE_DPI, gridspec_kw={'width_ratios': (1.1, 1)})
  # A square-root scale: the few-percent mistakes stay visible beside a bright diagonal.
  shown = matrix_ax.imshow(normalised, cmap='viridis', interpolation='nearest',
                           norm=colors.PowerNorm(gamma=0.5, vmin=0, vmax=1))
  fig.colorbar(shown, ax=matrix_ax, fraction=0.046, pad=0.04, label='fraction of the row')
  n = len(order)
  if n <= MAX_LABELLED_CLASSES:
    names = [_short(class_names[i]) for i in order]
    matrix_ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    matrix_ax.set_yticks(range(n), names, fontsize=7)
  matrix_ax.set_xlabel('predicted class (same order as the rows)')
  matrix_ax.set_ylabel('true class by top-1 rank (0 = best)')
  matrix_ax.set_title(f'Confusion, {n} classes ordered by top-1 accuracy')
  pairs = most_confused_pairs(confusion, TOP_PAIRS)[::-1]  # Largest bar at the top.
  pairs_ax.barh(range(len(pairs)), [count for _, _, count in pairs], color='tab:red')
  pairs_ax.set_yticks(range(len(pairs)),
                      [f'{_short(class_names[t])} -> {_short(class_names[p])}'
                       for t, p, _ in pairs], fontsize=8)
  pairs_ax.set_xlabel('images of the true class given the predicted one')
  pairs_ax.set_title(f'The {len(pairs)} most frequent mistakes (true -> predicted)')
  fig.tight_layout()
  reporting.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=FIGURE_DPI, format='png'))
  plt.close(fig)


def write_per_class_results(workdir: str | pathlib.Path, labels: np.ndarray,
                            predictions: np.ndarray, label_names, class_names) -> np.ndarray:
  """Writes `per_class_accuracy.csv` and `plots/confusion.png` into `workdir`.

  Returns:
    The confusion matrix.
  """
  workdir = pathlib.Path(workdir)
  confusion = confusion_matrix(labels, predictions, len(label_names))
  reporting.write_csv(workdir / PER_CLASS_FILE, PER_CLASS_COLUMNS,
                      per_class_rows(confusion, label_names, class_names))
  draw_confusion(workdir / 'plots' / CONFUSION_FILE, confusion, class_names)
  return confusion
