"""What a run writes for people: `history.csv` and the train-vs-val plots."""

import csv
import pathlib

import matplotlib

matplotlib.use('Agg')  # Files only: training hosts have no display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

HISTORY_FIELDS = ('epoch', 'train_loss', 'train_accuracy', 'train_top5_accuracy', 'val_loss',
                  'val_accuracy', 'val_top5_accuracy', 'learning_rate', 'seconds')


def write_history(path: str | pathlib.Path, history: list[dict]) -> None:
  """Rewrites `history.csv`: one row an epoch, the columns of `HISTORY_FIELDS`."""
  path = pathlib.Path(path)
  tmp = path.with_suffix('.csv.tmp')
  with tmp.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(history)
  tmp.replace(path)  # Atomic: an interrupted write never leaves half a file.


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
  tmp = path.with_suffix('.tmp.png')
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  tmp.replace(path)


def write_plots(plot_dir: str | pathlib.Path, history: list[dict]) -> None:
  """Redraws `loss.png` and `accuracy.png` (train vs validation, one line each)."""
  plot_dir = pathlib.Path(plot_dir)
  plot_dir.mkdir(parents=True, exist_ok=True)
  _plot(history, 'loss', 'loss', plot_dir / 'loss.png')
  _plot(history, 'accuracy', 'top-1 accuracy', plot_dir / 'accuracy.png')
