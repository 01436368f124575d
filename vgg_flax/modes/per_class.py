"""Per-class results of `--mode=evaluate`: `per_class_accuracy.csv` and `plots/confusion.png`.

With 200 classes a full confusion matrix with labels cannot be read, so the figure has two
panels: the row-normalised matrix with classes ordered by their top-1 accuracy (best first,
so the diagonal fades where the model struggles, and off-diagonal blocks show which of the
weak classes absorb each other), and the most-confused pairs as labelled bars.
"""

import pathlib

import numpy as np

from vgg_flax import plots
from vgg_flax.workdir import atomic
from vgg_flax.workdir import files

PER_CLASS_FILE = 'per_class_accuracy.csv'
CONFUSION_FILE = 'confusion.png'
PER_CLASS_COLUMNS = ('class_index', 'wnid', 'class_words', 'images', 'top1_accuracy',
                     'confused_with_index', 'confused_with_wnid', 'confused_with_words',
                     'confused_count')
TOP_PAIRS = 25


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


def draw_confusion(path: str | pathlib.Path, confusion: np.ndarray, class_names) -> None:
  """Writes the two-panel confusion figure (see the module docstring), atomically."""
  accuracy = np.nan_to_num(class_accuracy(confusion), nan=-1.0)
  order = np.argsort(-accuracy, kind='stable')
  images = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  normalised = (confusion / images)[order][:, order]
  words = [plots.short_words(name) for name in class_names]
  pairs = [(f'{words[t]} -> {words[p]}', count)
           for t, p, count in most_confused_pairs(confusion, TOP_PAIRS)]
  plots.draw_confusion(path, normalised, [words[i] for i in order], pairs)


def write_per_class_results(workdir: str | pathlib.Path, labels: np.ndarray,
                            predictions: np.ndarray, label_names, class_names) -> np.ndarray:
  """Writes `per_class_accuracy.csv` and `plots/confusion.png` into `workdir`.

  Returns:
    The confusion matrix.
  """
  workdir = pathlib.Path(workdir)
  confusion = confusion_matrix(labels, predictions, len(label_names))
  atomic.write_csv(workdir / PER_CLASS_FILE, PER_CLASS_COLUMNS,
                   per_class_rows(confusion, label_names, class_names))
  draw_confusion(workdir / files.PLOTS_DIR / CONFUSION_FILE, confusion, class_names)
  return confusion
