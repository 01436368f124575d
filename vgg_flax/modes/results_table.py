"""`--mode=summary`: the original README's results table, made from the members' workdirs.

  python main.py --mode=summary --workdir=runs/ensemble

For each (name, workdir) of `config.members` (the five of `configs/ensemble.py` by default)
it reads `config.json`, `history.csv` and the shapes in the `best/` checkpoint, nothing else:
no model is built, no data is read, so it runs in seconds on any machine. The best epoch and
whether training stopped early are replayed from `history.csv` with the run's own early
stopping settings, so they are the training loop's decisions.
"""

import datetime
import pathlib

import jax
import ml_collections

from vgg_flax import plots
from vgg_flax.errors import ConfigError
from vgg_flax.modes import ensemble
from vgg_flax.train.early_stopping import EarlyStopping
from vgg_flax.workdir import atomic
from vgg_flax.workdir import checkpoints
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

CSV_FILE = 'summary.csv'
MARKDOWN_FILE = 'summary.md'
FIGURE_FILE = 'plots/summary_val_accuracy.png'
COLUMNS = ('name', 'depth', 'conv1x1', 'parameters', 'epochs', 'best_epoch', 'train_loss',
           'train_accuracy', 'val_loss', 'val_accuracy', 'val_top5_accuracy', 'stopped_early',
           'training_seconds', 'workdir')
# summary.md's headers, in the order of COLUMNS (the workdir is left out there).
MARKDOWN_HEADERS = ('member', 'depth', '1x1', 'parameters', 'epochs', 'best epoch',
                    'train loss', 'train top-1', 'val loss', 'val top-1', 'val top-5',
                    'stopped early', 'training time')


def replay_early_stopping(history: list[dict], patience: int,
                          min_delta: float = 0.0) -> EarlyStopping:
  """The early-stopping state after the epochs of `history`, as training decided them."""
  stopper = EarlyStopping(patience=patience, min_delta=min_delta)
  for row in history:
    stopper.update(row['epoch'], row['val_loss'])
  return stopper


def read_member(name: str, workdir: str) -> tuple[ml_collections.ConfigDict, list[dict]]:
  """A member's saved config and its `history.csv` rows.

  Raises:
    FileNotFoundError: the workdir, its `history.csv` or its `config.json` is missing.
    ConfigError: `history.csv` has no epochs.
  """
  ensemble.require_trained([(name, workdir)], files.HISTORY_FILE)
  ensemble.require_trained([(name, workdir)], files.CONFIG_FILE)
  history = files.read_history(pathlib.Path(workdir) / files.HISTORY_FILE)
  if not history:
    raise ConfigError(f'member {name!r}: {workdir}/history.csv has no epochs '
                                    'yet; train it for at least one epoch.')
  return run_config.read_config(workdir), history


def member_row(name: str, workdir: str, saved: ml_collections.ConfigDict,
               history: list[dict]) -> dict:
  """One row of the table: the member's model, its size and its best epoch's metrics.

  Args:
    name: the member's name.
    workdir: its training workdir (for the parameter count).
    saved: its `config.json`.
    history: its `history.csv` rows, at least one.

  Returns:
    The fields of `COLUMNS`; `parameters` is None without a `best/` checkpoint.
  """
  stopper = replay_early_stopping(history, int(saved.early_stopping.patience),
                                  float(saved.early_stopping.min_delta))
  best = next(row for row in history if row['epoch'] == stopper.best_epoch)
  last_epoch = history[-1]['epoch']
  return {
      'name': name, 'depth': int(saved.model.depth), 'conv1x1': bool(saved.model.conv1x1),
      'parameters': checkpoints.count_parameters(workdir), 'epochs': last_epoch,
      'best_epoch': best['epoch'], 'train_loss': best['train_loss'],
      'train_accuracy': best['train_accuracy'], 'val_loss': best['val_loss'],
      'val_accuracy': best['val_accuracy'], 'val_top5_accuracy': best['val_top5_accuracy'],
      'stopped_early': stopper.should_stop and last_epoch < int(saved.num_epochs),
      'training_seconds': round(sum(row['seconds'] for row in history), 1),
      'workdir': str(workdir),
  }


def _duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


def markdown_table(rows: list[dict]) -> str:
  """The rows as a Markdown table (numbers rounded as the original's README table)."""
  def cells(row: dict) -> list[str]:
    parameters = row['parameters']
    return [row['name'], str(row['depth']), 'yes' if row['conv1x1'] else 'no',
            f'{parameters:,}' if parameters is not None else '-', str(row['epochs']),
            str(row['best_epoch']), f'{row["train_loss"]:.4f}', f'{row["train_accuracy"]:.4f}',
            f'{row["val_loss"]:.4f}', f'{row["val_accuracy"]:.4f}',
            f'{row["val_top5_accuracy"]:.4f}', 'yes' if row['stopped_early'] else 'no',
            _duration(row['training_seconds'])]
  lines = ['| ' + ' | '.join(MARKDOWN_HEADERS) + ' |',
           '| ' + ' | '.join('---' for _ in MARKDOWN_HEADERS) + ' |']
  lines += ['| ' + ' | '.join(cells(row)) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def summarize_members(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """`--mode=summary`: one row per member of `config.members`, written into `workdir`.

  Writes (each file atomically, only once every member is read):
    * `summary.csv`: the columns of `COLUMNS`; metrics are the best epoch's (lowest
      validation loss), `epochs` is the last epoch run, `training_seconds` their sum;
    * `summary.md`: the same as a Markdown table (the original README's results table);
    * `plots/summary_val_accuracy.png`: every member's validation accuracy per epoch, the
      best epoch starred.

  Args:
    config: with `members`, (name, workdir) pairs (`configs/ensemble.py`).
    workdir: where the summary goes.

  Returns:
    The rows.

  Raises:
    ConfigError: empty or malformed `members`, or a member without epochs.
    FileNotFoundError: a member's workdir, `history.csv` or `config.json` is missing.
  """
  members = ensemble.parse_members(config)
  read = {name: read_member(name, member_workdir) for name, member_workdir in members}
  rows = [member_row(name, member_workdir, *read[name]) for name, member_workdir in members]
  histories = {name: history for name, (_, history) in read.items()}
  if jax.process_index() == 0:
    out = pathlib.Path(workdir)
    atomic.write_csv(out / CSV_FILE, COLUMNS,
                     [[row[c] if row[c] is not None else '' for c in COLUMNS] for row in rows])
    table = markdown_table(rows)
    atomic.write_atomically(out / MARKDOWN_FILE, lambda tmp: tmp.write_text(table))
    plots.draw_member_curves(out / FIGURE_FILE, histories,
                             {row['name']: row['best_epoch'] for row in rows})
  print(markdown_table(rows), end='')
  print(f'{len(rows)} members -> {pathlib.Path(workdir) / CSV_FILE}, {MARKDOWN_FILE}, '
        f'{FIGURE_FILE}')
  return rows
