"""`--mode=summary`: the original README's results table, made from the members' workdirs.

  python main.py --mode=summary --workdir=runs/ensemble

For each (name, workdir) of `config.members` (the five of `configs/ensemble.py` by default)
it reads `config.json`, `history.csv` and the shapes in the `best/` checkpoint, nothing else:
no model is built, no data is read, so it runs in seconds on any machine. The best epoch and
whether training stopped early are replayed from `history.csv` with the run's own early
stopping settings, so they are the training loop's decisions.
"""

import datetime
import math
import pathlib

import jax
import matplotlib
import ml_collections
import orbax.checkpoint as ocp

matplotlib.use('Agg')  # Files only.
from matplotlib import ticker  # pylint: disable=g-import-not-at-top
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from vgg_flax import checkpointing  # pylint: disable=g-import-not-at-top
from vgg_flax import configuration  # pylint: disable=g-import-not-at-top
from vgg_flax import ensemble  # pylint: disable=g-import-not-at-top
from vgg_flax import reporting  # pylint: disable=g-import-not-at-top
from vgg_flax import workdir as workdirs  # pylint: disable=g-import-not-at-top
from vgg_flax.early_stopping import EarlyStopping  # pylint: disable=g-import-not-at-top

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


def count_parameters(workdir: str | pathlib.Path) -> int | None:
  """Trainable parameters in a workdir's `best/` checkpoint, from its stored shapes.

  Reads only the checkpoint's metadata (no arrays, no model), so the count is that of the
  network actually trained, whatever its number of classes. None without a `best/`.
  """
  path = pathlib.Path(workdir) / checkpointing.BEST_DIR
  if not path.is_dir():
    return None
  manager = ocp.CheckpointManager(
      path.absolute(), options=ocp.CheckpointManagerOptions(create=False),
      item_handlers={'variables': ocp.StandardCheckpointHandler(),
                     'loop': ocp.JsonCheckpointHandler()})
  try:
    step = manager.latest_step()
    if step is None:
      return None
    variables = manager.item_metadata(step)['variables']
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables['params']))
  finally:
    manager.close()


def read_member(name: str, workdir: str) -> tuple[ml_collections.ConfigDict, list[dict]]:
  """A member's saved config and its `history.csv` rows.

  Raises:
    FileNotFoundError: the workdir, its `history.csv` or its `config.json` is missing.
    ConfigError: `history.csv` has no epochs.
  """
  ensemble.require_trained([(name, workdir)], workdirs.HISTORY_FILE)
  ensemble.require_trained([(name, workdir)], workdirs.CONFIG_FILE)
  history = reporting.read_history(pathlib.Path(workdir) / workdirs.HISTORY_FILE)
  if not history:
    raise configuration.ConfigError(f'member {name!r}: {workdir}/history.csv has no epochs '
                                    'yet; train it for at least one epoch.')
  return workdirs.read_config(workdir), history


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
  stopping = saved.get('early_stopping', ml_collections.ConfigDict())
  stopper = replay_early_stopping(history, int(stopping.get('patience', 6)),
                                  float(stopping.get('min_delta', 0.0)))
  best = next(row for row in history if row['epoch'] == stopper.best_epoch)
  last_epoch = history[-1]['epoch']
  return {
      'name': name, 'depth': int(saved.model.depth), 'conv1x1': bool(saved.model.conv1x1),
      'parameters': count_parameters(workdir), 'epochs': last_epoch,
      'best_epoch': best['epoch'], 'train_loss': best['train_loss'],
      'train_accuracy': best['train_accuracy'], 'val_loss': best['val_loss'],
      'val_accuracy': best['val_accuracy'], 'val_top5_accuracy': best['val_top5_accuracy'],
      'stopped_early': stopper.should_stop and last_epoch < int(saved.get('num_epochs', 0)),
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


def plot_val_accuracy(path: str | pathlib.Path, histories: dict[str, list[dict]],
                      best_epochs: dict[str, int]) -> None:
  """Every member's validation top-1 per epoch on one figure, its best epoch starred."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
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
  reporting.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format='png'))
  plt.close(fig)


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
    reporting.write_csv(out / CSV_FILE, COLUMNS,
                        [[row[c] if row[c] is not None else '' for c in COLUMNS]
                         for row in rows])
    table = markdown_table(rows)
    reporting.write_atomically(out / MARKDOWN_FILE, lambda tmp: tmp.write_text(table))
    plot_val_accuracy(out / FIGURE_FILE, histories,
                      {row['name']: row['best_epoch'] for row in rows})
  print(markdown_table(rows), end='')
  print(f'{len(rows)} members -> {pathlib.Path(workdir) / CSV_FILE}, {MARKDOWN_FILE}, '
        f'{FIGURE_FILE}')
  return rows
