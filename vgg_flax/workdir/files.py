"""The files of a workdir: their names, `history.csv`, and what a trained workdir must hold."""

import csv
import os
import pathlib

from vgg_flax.workdir import atomic

# The repository's config files: messages name the one that trains a workdir.
CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / 'configs'

CONFIG_FILE = 'config.json'  # The run's whole config (written when training starts).
HISTORY_FILE = 'history.csv'  # One row an epoch.
PLOTS_DIR = 'plots'  # loss.png, accuracy.png, the sample grids, confusion.png.
LATEST_DIR = 'checkpoints'  # Orbax checkpoints of the last epochs (resume).
BEST_DIR = 'best'  # Orbax checkpoints of the lowest val loss (evaluate, predict, export).
DAMAGED_DIR = 'damaged'  # Checkpoints that failed to restore, moved aside.
EVAL_RESULTS_FILE = 'eval_results.json'  # --mode=evaluate.
TEST_PREDICTIONS_FILE = 'test_predictions.csv'  # --mode=predict on a split.
IMAGE_PREDICTIONS_FILE = 'image_predictions.csv'  # --mode=predict on a user's images.
HELD_OUT_FILE = 'held_out.csv'  # An image folder's validation images held out of train/.
EXPLANATIONS_DIR = 'explanations'  # Grad-CAM of each image (explain=True).
GRADCAM_GRID_FILE = 'gradcam_grid.png'  # In PLOTS_DIR: the Grad-CAM strips of a few images.

HISTORY_FIELDS = ('epoch', 'train_loss', 'train_accuracy', 'train_top5_accuracy', 'val_loss',
                  'val_accuracy', 'val_top5_accuracy', 'learning_rate', 'seconds')


def write_history(path: str | pathlib.Path, history: list[dict]) -> None:
  """Rewrites `history.csv`: one row an epoch, the columns of `HISTORY_FIELDS`."""
  def write(tmp: pathlib.Path) -> None:
    with tmp.open('w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction='ignore')
      writer.writeheader()
      writer.writerows(history)
  atomic.write_atomically(path, write)


def read_history(path: str | pathlib.Path) -> list[dict]:
  """Reads `history.csv` back, numbers as floats (epoch as int)."""
  with pathlib.Path(path).open(newline='') as f:
    rows = list(csv.DictReader(f))
  return [{k: int(v) if k == 'epoch' else float(v) for k, v in row.items()} for row in rows]


def train_command(workdir: str | os.PathLike) -> str:
  """The command that trains a workdir (its config guessed from the folder name)."""
  config = CONFIG_DIR / f'{pathlib.PurePath(workdir).name}.py'
  config_arg = f'configs/{config.name}' if config.is_file() else 'configs/<model>.py'
  return f'python main.py --config={config_arg} --workdir={workdir}'


def require_trained(workdir: str | os.PathLike, name: str, needs: str) -> None:
  """A one-line FileNotFoundError, naming the command that trains it, where `workdir` or
  `needs` (a path relative to it, e.g. 'history.csv', 'best/') is missing.

  Args:
    workdir: a training workdir.
    name: what the message calls it (e.g. "member '13'").
    needs: what the caller reads from it.
  """
  path = pathlib.Path(workdir)
  if not path.is_dir():
    raise FileNotFoundError(f'{name}: workdir {workdir} does not exist; train it first: '
                            f'{train_command(workdir)}')
  if not (path / needs).exists():
    raise FileNotFoundError(f'{name}: {workdir} holds no {needs}; train it first: '
                            f'{train_command(workdir)}')
