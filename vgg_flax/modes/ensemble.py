"""`--mode=predict_ensemble`: several trained workdirs vote on the test images.

The original project wrote each model's test predictions to one CSV (columns
`images, 11, 13, 16, 16_C11, 19`) and took each row's most frequent class. On a tie its README
keeps the 11-layer model's class, but its code (pandas `mode()`, first value) took the smallest
class index among the tied classes, and its published CSV was made that way. `hard_vote`
does either (`tie_break='first_member'`: the earliest member's class among the tied ones;
`'lowest_class'`: the smallest tied class index); `tied_classes` lists the tied classes.
`soft_vote` averages the members' probabilities instead. All are plain numpy, tested on
crafted votes.

Every member is rebuilt from its own `config.json` (members may differ in depth, width and
image size) and restored from its `best/`; all of them read the same data (the ensemble
config's data section when it names data, else the first member's).
"""

import pathlib
from typing import Sequence

import jax
import ml_collections
import numpy as np

from input_pipeline import pipeline
from vgg_flax import plots
from vgg_flax.core import sharding
from vgg_flax.errors import ConfigError
from vgg_flax.modes import predictions as model_predictions
from vgg_flax.workdir import atomic
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files
from vgg_flax.workdir import restore

PREDICTIONS_FILE = 'ensemble_predictions.csv'
REPORT_FILE = 'ensemble_report.json'
FIGURE_FILE = 'sample_predictions.png'
VOTE_COLUMNS = ('mode_pred', 'soft_pred', 'class_pred', 'class_words', 'tied_classes')
# How `hard_vote` breaks a tie: the README's rule (default) or the original code's.
TIE_BREAKS = ('first_member', 'lowest_class')
# The fields of configs/ensemble.py that the ensemble and the summary read.
ENSEMBLE_FIELDS = ('members', 'tie_break', 'num_sample_images')


# --- The votes (numpy) --------------------------------------------------------------------


def _top_votes(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The checked predictions and, per member and image, whether its class has the top count."""
  predictions = np.asarray(predictions)
  if predictions.ndim != 2 or predictions.shape[0] < 1:
    raise ValueError(f'predictions must be (n_members >= 1, n_images), not {predictions.shape}.')
  # votes[j, i]: how many members predict member j's class for image i.
  votes = (predictions[:, None, :] == predictions[None, :, :]).sum(axis=1)
  return predictions, votes == votes.max(axis=0)


def hard_vote(predictions: np.ndarray, tie_break: str = 'first_member') -> np.ndarray:
  """Each image's most frequent class, ties broken by `tie_break`.

  Args:
    predictions: (n_members, n_images) class indices, members in priority order.
    tie_break: among the classes with the top count, `'first_member'` takes the one the
      earliest member predicted (the original's README: when all five disagree, the first
      member's class stands); `'lowest_class'` takes the smallest class index (the original's
      code and its published CSV).

  Returns:
    (n_images,) class indices.
  """
  predictions, top = _top_votes(predictions)
  if tie_break == 'first_member':
    # argmax returns the first maximum: the earliest member among those with the top count.
    winner = np.argmax(top, axis=0)
    return predictions[winner, np.arange(predictions.shape[1])]
  if tie_break == 'lowest_class':
    return np.where(top, predictions, np.iinfo(predictions.dtype).max).min(axis=0)
  raise ValueError(f'tie_break={tie_break!r} is not one of {", ".join(map(repr, TIE_BREAKS))}.')


def tied_classes(predictions: np.ndarray) -> list[list[int]]:
  """Per image, the classes sharing the top count in ascending order; [] without a tie."""
  predictions, top = _top_votes(predictions)
  tied = [sorted({int(c) for c in predictions[top[:, i], i]})
          for i in range(predictions.shape[1])]
  return [classes if len(classes) > 1 else [] for classes in tied]


def soft_vote(probabilities: np.ndarray) -> np.ndarray:
  """The class of highest mean probability over the members.

  Args:
    probabilities: (n_members, n_images, n_classes) softmax outputs.

  Returns:
    (n_images,) class indices (the lowest index on an exact tie).
  """
  probabilities = np.asarray(probabilities)
  if probabilities.ndim != 3 or probabilities.shape[0] < 1:
    raise ValueError('probabilities must be (n_members >= 1, n_images, n_classes), not '
                     f'{probabilities.shape}.')
  return np.argmax(probabilities.mean(axis=0), axis=-1)


def agreement(predictions: np.ndarray) -> dict[str, float]:
  """How often members agree: all of them, and two members on average."""
  predictions = np.asarray(predictions)
  n = predictions.shape[0]
  same = predictions[:, None, :] == predictions[None, :, :]
  pairs = [same[a, b].mean() for a in range(n) for b in range(a + 1, n)]
  return {'all_agree': float(np.all(predictions == predictions[:1], axis=0).mean()),
          'mean_pairwise': float(np.mean(pairs)) if pairs else 1.0}


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of predictions equal to the labels."""
  return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


# --- Members ------------------------------------------------------------------------------


def check_ensemble_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a config without the ensemble's fields (a model's config, given by mistake)."""
  missing = [field for field in ENSEMBLE_FIELDS if field not in config]
  if missing:
    raise ConfigError(f'the config has no {", ".join(missing)}: --mode=predict_ensemble and '
                      '--mode=summary take configs/ensemble.py (the default without --config) '
                      'or a config built from it.')


def parse_members(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """`config.members` as (name, workdir) pairs, checked.

  Raises:
    ConfigError: no ensemble fields, an empty list, a malformed entry, or a repeated or
      reserved name.
  """
  check_ensemble_config(config)
  members = list(config.members or [])
  if not members:
    raise ConfigError(
        'config.members is empty; list the (name, workdir) pairs to ensemble, e.g. '
        "[('11', 'runs/vgg11'), ('13', 'runs/vgg13')].")
  pairs = []
  for entry in members:
    if not isinstance(entry, (tuple, list)) or len(entry) != 2:
      raise ConfigError(
          f'config.members entry {entry!r} is not a (name, workdir) pair.')
    name, workdir = str(entry[0]), str(entry[1])
    if name in ('images', 'label', *VOTE_COLUMNS) or name in dict(pairs):
      raise ConfigError(
          f'config.members name {name!r} is repeated or is a column name of the CSV; '
          'give each member its own name.')
    pairs.append((name, workdir))
  return pairs


def tie_break_of(config: ml_collections.ConfigDict) -> str:
  """`config.tie_break`, checked."""
  tie_break = config.tie_break
  if tie_break not in TIE_BREAKS:
    raise ConfigError(
        f'tie_break={tie_break!r} is not one of {", ".join(map(repr, TIE_BREAKS))}.')
  return tie_break


def _member_label(name: str) -> str:
  return f'member {name!r}'


def require_trained(members: Sequence[tuple[str, str]], needs: str) -> None:
  """Raises a one-line FileNotFoundError for the first member not trained yet.

  Args:
    members: (name, workdir) pairs.
    needs: what a trained workdir holds, relative to it (e.g. 'history.csv', 'best/').
  """
  for name, workdir in members:
    files.require_trained(workdir, _member_label(name), needs)


def predict_members(config: ml_collections.ConfigDict, members: list[tuple[str, str]],
                    keep_images: int) -> tuple[list, list, list]:
  """Each member's predictions on `config.eval_split` and `config.predict_split`.

  Every workdir is checked before any model runs; members are restored one at a time, so
  only one model is in memory.

  Returns:
    (restored members without their variables, eval predictions, test predictions).
  """
  saved = [restore.load_workdir_config(workdir, _member_label(name))
           for name, workdir in members]
  data = config if restore.names_data(config) else saved[0]
  if data is saved[0]:  # The first member's own data: checked like a command line's.
    run_config.check_saved_data(data, pathlib.Path(members[0][1]) / files.CONFIG_FILE)
  mesh = sharding.create_mesh()
  restored, evals, tests = [], [], []
  dataset = None  # All members read `data`: opened (prepared, decoded) once, for all.
  for index, (name, workdir) in enumerate(members):
    member = restore.restore_model(_member_label(name), workdir, runtime=config, data=data,
                                   mesh=mesh, dataset=dataset)
    dataset = member.dataset
    if index == 0:  # Unknown splits fail before anything is predicted.
      pipeline.split_size(member.info, config.eval_split)
      pipeline.split_size(member.info, config.predict_split)
    evals.append(model_predictions.predict_split(member, config.eval_split, mesh=mesh))
    tests.append(model_predictions.predict_split(member, config.predict_split, mesh=mesh,
                                                 keep_images=keep_images if index == 0 else 0))
    member.variables = None  # Only one model's variables in memory at a time.
    restored.append(member)
  return restored, evals, tests


def _check_same_images(members: list, split_predictions: list) -> None:
  first = split_predictions[0].file_names
  for member, predictions in zip(members[1:], split_predictions[1:]):
    if not np.array_equal(predictions.file_names, first):
      raise pipeline.DataError(f'{member.name} predicted other images of split '
                               f'{predictions.split!r} than the first member.')


# --- Results ------------------------------------------------------------------------------


def vote_rows(names: list[str], split_predictions: list, info: pipeline.DatasetInfo, *,
              with_labels: bool, tie_break: str = 'first_member'
              ) -> tuple[list[str], list[list], np.ndarray, np.ndarray]:
  """The ensemble CSV of one split.

  Returns:
    (header, rows, hard-vote classes, soft-vote classes). Columns: `images`, `label` (with
    labels only), one per member, `mode_pred` (hard vote, ties by `tie_break`), `soft_pred`,
    `class_pred` (wnid of `mode_pred`), `class_words`, `tied_classes` (the classes sharing
    the top count, space-separated; empty without a tie).
  """
  member_predictions = np.stack([p.predictions for p in split_predictions])
  mode = hard_vote(member_predictions, tie_break=tie_break)
  ties = tied_classes(member_predictions)
  soft = soft_vote(np.stack([p.probabilities for p in split_predictions]))
  first = split_predictions[0]
  header = ['images', *(['label'] if with_labels else []), *names, *VOTE_COLUMNS]
  rows = []
  for i, file_name in enumerate(first.file_names):
    rows.append([file_name, *([int(first.labels[i])] if with_labels else []),
                 *(int(c) for c in member_predictions[:, i]), int(mode[i]), int(soft[i]),
                 info.label_names[mode[i]], info.class_names[mode[i]],
                 ' '.join(map(str, ties[i]))])
  return header, rows, mode, soft


def build_report(config, names: list[str], members: list, evals: list, tests: list,
                 mode: np.ndarray, soft: np.ndarray) -> dict:
  """Top-1 of each member, of both votes, the members' agreement and the ties, on the eval split.

  `tie_break` is the rule the hard vote used; `tied_images` counts the images whose top count
  several classes share.
  """
  labels = evals[0].labels
  if (labels < 0).any():
    raise pipeline.DataError(f'eval_split {config.eval_split!r} is unlabelled; the report '
                             'needs a labelled split.')
  member_predictions = np.stack([p.predictions for p in evals])
  return {
      'split': config.eval_split,
      'tta': config.tta,
      'num_images': int(len(labels)),
      'members': [{'name': name, 'workdir': str(m.workdir),
                   'best_epoch': m.best_epoch, 'depth': int(m.config.model.depth),
                   'conv1x1': bool(m.config.model.conv1x1), 'width': int(m.config.model.width),
                   'image_size': int(m.config.image_size)} for name, m in zip(names, members)],
      # The eval step's top-1, as each member's training and --mode=evaluate report it.
      'member_accuracy': {name: p.metrics['accuracy'] for name, p in zip(names, evals)},
      'hard_vote_accuracy': accuracy(mode, labels),
      'tie_break': tie_break_of(config),
      'tied_images': sum(bool(t) for t in tied_classes(member_predictions)),
      'soft_vote_accuracy': accuracy(soft, labels),
      'agreement': agreement(member_predictions),
      'predict_split': config.predict_split,
      'predict_images': int(len(tests[0].file_names)),
  }


def figure_size(num_images: int) -> tuple[int, int]:
  """The figure's (width, height) in pixels for `num_images` images."""
  return plots.grid_size(num_images)


def predict_ensemble(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Votes of the members of `config.members` on the test and validation splits.

  Writes, into `workdir`, only once everything is computed (each file atomically):
    * `ensemble_predictions.csv`: `config.predict_split`, one row per image in file-name
      order: `images`, one column per member, `mode_pred` (ties broken by
      `config.tie_break`), `soft_pred`, `class_pred`, `class_words`, `tied_classes`;
    * `ensemble_<eval_split>_predictions.csv`: the same on `config.eval_split`, plus `label`;
    * `ensemble_report.json`: see `build_report`;
    * `sample_predictions.png`: the first `config.num_sample_images` test images titled with
      the hard vote's class words.

  Args:
    config: from `configs/ensemble.py` (`members`, `tie_break`, splits, batch size, data
      section).
    workdir: where the results go.

  Returns:
    The report.

  Raises:
    ConfigError: empty or malformed `members`, an unknown `tie_break`, or members trained
      on other classes.
    FileNotFoundError: a member's workdir or `best/` checkpoint is missing (the message
      names the command that trains it).
    DataError: an unknown split.
  """
  members = parse_members(config)
  tie_break = tie_break_of(config)
  require_trained(members, 'best/')
  names = [name for name, _ in members]
  num_images = int(config.num_sample_images)
  restored, evals, tests = predict_members(config, members, num_images)
  _check_same_images(restored, evals)
  _check_same_images(restored, tests)
  info = restored[0].info
  eval_header, eval_rows, eval_mode, eval_soft = vote_rows(names, evals, info, with_labels=True,
                                                           tie_break=tie_break)
  header, rows, test_mode, _ = vote_rows(names, tests, info, with_labels=False,
                                         tie_break=tie_break)
  report = build_report(config, names, restored, evals, tests, eval_mode, eval_soft)
  images = tests[0].images
  row_of = {name: i for i, name in enumerate(tests[0].file_names)}
  titles = [plots.short_words(info.class_names[test_mode[row_of[name]]])
            for name in tests[0].image_names]
  if jax.process_index() == 0:
    out = pathlib.Path(workdir)
    atomic.write_csv(out / f'ensemble_{config.eval_split}_predictions.csv', eval_header,
                     eval_rows)
    atomic.write_csv(out / PREDICTIONS_FILE, header, rows)
    if len(images):
      plots.write_png(out / FIGURE_FILE, plots.draw_image_grid(images, titles))
    atomic.write_json(out / REPORT_FILE, report)
  print(f'{len(names)} members on {config.eval_split}: '
        + ', '.join(f'{n} {a:.4f}' for n, a in report['member_accuracy'].items())
        + f'; hard vote {report["hard_vote_accuracy"]:.4f}, soft vote '
        f'{report["soft_vote_accuracy"]:.4f} -> {workdir}')
  return report
