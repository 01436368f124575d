"""evaluate, predict and predict_ensemble: the votes, end to end on the sample, bad input."""

import csv
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import default
from configs import ensemble as ensemble_config
from input_pipeline import pipeline
from input_pipeline import synthetic
from input_pipeline import tiny_imagenet
from vgg_flax.workdir import config as configuration
from vgg_flax.modes import ensemble
from vgg_flax.modes import one_model as predict
from vgg_flax import train
from vgg_flax.workdir import files


REPO = pathlib.Path(__file__).resolve().parents[1]
# (name, depth, seed, image_size): members differ in depth, initialisation and image size.
MEMBERS = (('a', 11, 0, 32), ('b', 13, 1, 40))


# --- The votes ----------------------------------------------------------------------------


def test_hard_vote_majority_wins():
  predictions = np.array([[0, 1, 2], [3, 1, 2], [3, 4, 2], [3, 1, 5], [9, 9, 2]])
  np.testing.assert_array_equal(ensemble.hard_vote(predictions), [3, 1, 2])


def test_hard_vote_two_pairs_tied_go_to_the_earliest_member():
  # Image 0: pairs {5: members 1, 3} and {7: members 2, 4}; member 0's class 9 is alone, so
  # the tie between 5 and 7 goes to 5 (member 1 is earlier than member 2).
  # Image 1: the same pairs, but member 0 belongs to the pair of 7.
  predictions = np.array([[9, 7], [5, 5], [7, 8], [5, 5], [7, 7]])
  np.testing.assert_array_equal(ensemble.hard_vote(predictions), [5, 7])


def test_hard_vote_all_disagree_keeps_the_first_member():
  predictions = np.array([[4, 0], [3, 1], [2, 2], [1, 3], [0, 4]])
  np.testing.assert_array_equal(ensemble.hard_vote(predictions), [4, 0])


def test_hard_vote_is_not_the_smallest_class_on_a_tie():
  # pandas' mode would pick 1 (the smaller class); the earliest member's class is 8.
  np.testing.assert_array_equal(ensemble.hard_vote(np.array([[8], [1], [8], [1]])), [8])


def test_soft_vote_is_the_argmax_of_the_mean():
  probabilities = np.array([
      [[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]],
      [[0.0, 0.5, 0.5], [0.5, 0.4, 0.1]],
      [[0.1, 0.5, 0.4], [0.4, 0.5, 0.1]],
  ])
  # By hand: image 0 mean (0.233, 0.467, 0.3) -> 1; image 1 mean (0.333, 0.367, 0.3) -> 1,
  # although the hard vote of image 1 is a three-way disagreement (the first member's 2).
  np.testing.assert_array_equal(ensemble.soft_vote(probabilities), [1, 1])
  np.testing.assert_array_equal(ensemble.hard_vote(probabilities.argmax(-1)), [1, 2])


def test_agreement():
  result = ensemble.agreement(np.array([[0, 1, 2, 3], [0, 1, 2, 0], [0, 0, 2, 1]]))
  assert result['all_agree'] == pytest.approx(0.5)
  assert result['mean_pairwise'] == pytest.approx((3 / 4 + 2 / 4 + 2 / 4) / 3)


def test_votes_refuse_bad_shapes():
  with pytest.raises(ValueError, match='n_members'):
    ensemble.hard_vote(np.zeros((0, 3), int))
  with pytest.raises(ValueError, match='n_members'):
    ensemble.soft_vote(np.zeros((2, 3)))


# --- Trained members (once per module) ----------------------------------------------------


def tiny_config(sample_folder, data_dir, *, depth=11, seed=0, image_size=32):
  """The `data_config` fixture's config (module scope cannot use that function fixture)."""
  config = default.get_config()
  config.data_source = str(sample_folder)
  config.data_dir = str(data_dir)
  config.batch_size = 16
  config.eval_batch_size = 16
  config.image_size = image_size
  config.model.depth = depth
  config.model.width = 8
  config.model.hidden_units = 32
  config.num_epochs = 1
  config.steps_per_epoch = 3
  config.learning_rate = 3e-3
  config.seed = seed
  config.progress_bar = False
  config.log_every_steps = 1
  return config


@pytest.fixture(scope='module')
def members(tmp_path_factory, sample_folder, tfds_data_dir):
  """Workdirs of tiny members trained for one epoch: {name: workdir}."""
  root = tmp_path_factory.mktemp('members')
  workdirs = {}
  for name, depth, seed, image_size in MEMBERS:
    workdirs[name] = root / name
    train.train_and_evaluate(
        tiny_config(sample_folder, tfds_data_dir, depth=depth, seed=seed,
                    image_size=image_size), str(workdirs[name]))
  return workdirs


def make_ensemble_config(members_list, **overrides):
  config = ensemble_config.get_config()
  config.members = tuple((name, str(workdir)) for name, workdir in members_list)
  config.eval_batch_size = 16
  config.progress_bar = False
  for key, value in overrides.items():
    config[key] = value
  return config


def record_reads(patch) -> list[list[str]]:
  """Patches `pipeline.open_dataset` to record, per Dataset opened, the splits it reads."""
  opened, open_dataset = [], pipeline.open_dataset

  def counted_open(config):
    dataset, reads = open_dataset(config), []
    as_dataset = dataset.builder.as_dataset

    def counted_read(*args, **kwargs):
      reads.append(getattr(kwargs['split'], 'split', kwargs['split']))  # This process's.
      return as_dataset(*args, **kwargs)

    patch.setattr(dataset.builder, 'as_dataset', counted_read)
    opened.append(reads)
    return dataset

  patch.setattr(pipeline, 'open_dataset', counted_open)
  return opened


@pytest.fixture(scope='module')
def ensemble_run(members, tmp_path_factory):
  """predict_ensemble of a, b and a again (three voters, so the hard vote can outvote b),
  and the splits read from each Dataset it opened."""
  out = tmp_path_factory.mktemp('ensemble')
  config = make_ensemble_config([('a', members['a']), ('b', members['b']),
                                 ('a2', members['a'])])
  with pytest.MonkeyPatch.context() as patch:
    opened = record_reads(patch)
    report = ensemble.predict_ensemble(config, str(out))
  return out, report, opened


def read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def sample_info(sample_folder, tfds_data_dir):
  return pipeline.get_dataset_info(tiny_config(sample_folder, tfds_data_dir))


# --- End to end ---------------------------------------------------------------------------


@pytest.mark.slow  # Trains end to end: the trained members.
def test_ensemble_csv_has_one_row_per_test_image(ensemble_run, sample_folder, tfds_data_dir):
  out, _, _ = ensemble_run
  rows = read_csv(out / 'ensemble_predictions.csv')
  info = sample_info(sample_folder, tfds_data_dir)
  assert list(rows[0]) == ['images', 'a', 'b', 'a2', 'mode_pred', 'soft_pred', 'class_pred',
                           'class_words', 'tied_classes']
  assert len(rows) == info.split_sizes['test']
  names = [row['images'] for row in rows]
  assert names == sorted(names, key=tiny_imagenet.natural_key)
  assert len(set(names)) == len(names)
  wnids = sorted((pathlib.Path(sample_folder) / 'wnids.txt').read_text().split())
  for row in rows:
    member_votes = np.array([[int(row[m])] for m in ('a', 'b', 'a2')])
    assert int(row['mode_pred']) == ensemble.hard_vote(member_votes)[0]
    # a and a2 are the same model, so they always outvote b.
    assert row['mode_pred'] == row['a']
    assert row['tied_classes'] == ''  # Two of three members always agree: never a tie.
    assert row['class_pred'] == wnids[int(row['mode_pred'])]
    assert row['class_words'] == info.class_names[int(row['mode_pred'])]


@pytest.mark.slow  # Trains end to end: the trained members.
def test_ensemble_report_matches_the_validation_csv(ensemble_run, sample_folder,
                                                    tfds_data_dir):
  out, report, _ = ensemble_run
  assert json.loads((out / 'ensemble_report.json').read_text()) == report
  rows = read_csv(out / 'ensemble_validation_predictions.csv')
  info = sample_info(sample_folder, tfds_data_dir)
  assert len(rows) == report['num_images'] == info.split_sizes['validation']
  labels = np.array([int(row['label']) for row in rows])
  column = lambda name: np.array([int(row[name]) for row in rows])
  for name in ('a', 'b', 'a2'):
    assert report['member_accuracy'][name] == pytest.approx(np.mean(column(name) == labels))
  assert report['hard_vote_accuracy'] == pytest.approx(np.mean(column('mode_pred') == labels))
  assert (report['tie_break'], report['tied_images']) == ('first_member', 0)
  assert report['soft_vote_accuracy'] == pytest.approx(np.mean(column('soft_pred') == labels))
  agree = np.mean((column('a') == column('b')) & (column('b') == column('a2')))
  assert report['agreement']['all_agree'] == pytest.approx(agree)
  assert [m['depth'] for m in report['members']] == [11, 13, 11]
  assert [m['image_size'] for m in report['members']] == [32, 40, 32]


@pytest.mark.slow  # Trains end to end: the trained members.
def test_ensemble_member_accuracy_matches_its_own_evaluation(ensemble_run, members):
  _, report, _ = ensemble_run
  history = files.read_history(members['b'] / 'history.csv')
  assert report['member_accuracy']['b'] == history[-1]['val_accuracy']


@pytest.mark.slow  # Trains end to end: the trained members.
def test_ensemble_figure_is_a_png_of_the_test_images(ensemble_run):
  out, report, _ = ensemble_run
  with Image.open(out / 'sample_predictions.png') as image:
    assert image.format == 'PNG'
    assert image.size == ensemble.figure_size(min(report['predict_images'], 16))
    image.verify()
  assert not [p.name for p in out.iterdir() if p.name.startswith('.')]  # No temp files.


@pytest.mark.slow  # Trains end to end: the trained members.
def test_ensemble_members_share_one_dataset(ensemble_run):
  """Members that read the same data open it once: prepared once, each split decoded once."""
  _, report, opened = ensemble_run
  # One Dataset, three members: the splits (cached by cache='auto') are decoded once.
  assert opened == [['validation', 'test']]
  assert report['num_images'] == 32 and report['predict_images'] == 12


@pytest.mark.slow  # Trains end to end: the trained members.
def test_evaluate_reproduces_the_best_epoch_of_history(members, sample_folder, tfds_data_dir):
  workdir = members['b']
  results = predict.evaluate_workdir(tiny_config(sample_folder, tfds_data_dir), str(workdir))
  history = files.read_history(workdir / 'history.csv')
  best = min(history, key=lambda row: row['val_loss'])
  assert results['best_epoch'] == best['epoch']
  # One eval step and one clu metric serve both: the numbers are equal, not just close.
  assert results['loss'] == best['val_loss']
  assert results['accuracy'] == best['val_accuracy']
  assert results['top5_accuracy'] == best['val_top5_accuracy']
  assert json.loads((workdir / 'eval_results.json').read_text()) == results


@pytest.mark.slow  # Trains end to end: the trained members.
def test_predict_writes_every_test_image_once(members, sample_folder, tfds_data_dir):
  path = predict.predict_workdir(default.get_config(), str(members['a']))
  rows = read_csv(path)
  info = sample_info(sample_folder, tfds_data_dir)
  assert list(rows[0]) == list(predict.PREDICTION_COLUMNS)
  assert [row['images'] for row in rows] == [f'test_{i}.JPEG'
                                             for i in range(info.split_sizes['test'])]
  for row in rows:
    top5 = [int(i) for i in row['top5_indices'].split()]
    assert top5[0] == int(row['class_index'])
    assert len(top5) == len(set(top5)) == min(5, info.num_classes)
    assert row['wnid'] == info.label_names[int(row['class_index'])]
    assert 1 / info.num_classes <= float(row['probability']) <= 1


# --- Bad input ----------------------------------------------------------------------------


def assert_fails(config, out, error, match):
  with pytest.raises(error, match=match) as raised:
    ensemble.predict_ensemble(config, str(out))
  assert '\n' not in str(raised.value)
  assert not out.exists() or not list(out.iterdir())  # Nothing half-written.


def test_empty_member_list(tmp_path):
  assert_fails(make_ensemble_config([]), tmp_path / 'out', configuration.ConfigError,
               'config.members is empty')


@pytest.mark.slow  # Trains end to end: the trained members.
def test_missing_member_workdir(members, tmp_path):
  config = make_ensemble_config([('a', members['a']), ('13', tmp_path / 'nowhere')])
  assert_fails(config, tmp_path / 'out', FileNotFoundError,
               "member '13': workdir .*nowhere does not exist")


@pytest.mark.slow  # Trains end to end: the trained members.
def test_member_without_best_checkpoint(members, tmp_path):
  untrained = tmp_path / 'untrained'
  untrained.mkdir()
  shutil.copy(members['a'] / 'config.json', untrained / 'config.json')
  config = make_ensemble_config([('a', members['a']), ('u', untrained)])
  assert_fails(config, tmp_path / 'out', FileNotFoundError, "member 'u': .* no best/")


@pytest.fixture(scope='module')
def other_sample(tmp_path_factory):
  """A 3-class sample: other wnids than the members were trained on."""
  return synthetic.write_sample(tmp_path_factory.mktemp('other'), num_classes=3,
                                train_per_class=2, val_per_class=2, test_images=2, seed=7)


def copy_member(workdir, to, **saved_fields):
  """A copy of a member's workdir with some fields of its config.json changed."""
  shutil.copytree(workdir, to)
  saved = json.loads((to / 'config.json').read_text())
  saved.update(saved_fields)
  (to / 'config.json').write_text(json.dumps(saved))
  return to


@pytest.mark.slow  # Trains end to end: the trained members.
def test_member_trained_on_other_classes(members, other_sample, tmp_path):
  other = copy_member(members['b'], tmp_path / 'other', data_source=str(other_sample))
  config = make_ensemble_config([('a', members['a']), ('other', other)])
  assert_fails(config, tmp_path / 'out', configuration.ConfigError,
               "member 'other' was trained on 3 other classes than the 4")


@pytest.mark.slow  # Trains end to end: the trained members.
def test_member_whose_data_moved_is_checked_by_its_checkpoint(members, other_sample, tmp_path,
                                                              tfds_data_dir):
  moved = copy_member(members['a'], tmp_path / 'moved', data_source=str(tmp_path / 'gone'))
  config = make_ensemble_config([('moved', moved)], data_source=str(other_sample),
                                data_dir=str(tfds_data_dir))
  assert_fails(config, tmp_path / 'out', configuration.ConfigError,
               "member 'moved': the best/ checkpoint .* does not fit .* 3 classes")


@pytest.mark.slow  # Trains end to end: the trained members.
def test_unknown_split(members, tmp_path):
  config = make_ensemble_config([('a', members['a'])], predict_split='tset')
  assert_fails(config, tmp_path / 'out', pipeline.DataError, "split 'tset' does not exist")


@pytest.mark.slow  # Trains end to end: the trained members.
def test_bad_eval_batch_size(members, tmp_path):
  config = make_ensemble_config([('a', members['a'])], eval_batch_size=0)
  assert_fails(config, tmp_path / 'out', configuration.ConfigError,
               'eval_batch_size=0 must be a positive int')


@pytest.mark.parametrize('entry', ['runs/vgg11', 11, ('11', 'runs/vgg11', 'extra')])
def test_malformed_member_entry(entry, tmp_path):
  config = ensemble_config.get_config()
  config.members = (entry,)
  assert_fails(config, tmp_path / 'out', configuration.ConfigError, 'is not a .name, workdir. pair')


@pytest.mark.slow  # Trains end to end: the trained members.
def test_repeated_member_name(members, tmp_path):
  config = make_ensemble_config([('a', members['a']), ('a', members['b'])])
  assert_fails(config, tmp_path / 'out', configuration.ConfigError, "name 'a' is repeated")


def test_evaluate_missing_workdir(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    predict.evaluate_workdir(default.get_config(), str(tmp_path / 'nowhere'))


# --- main.py ------------------------------------------------------------------------------


def run_main(*args, cwd):
  return subprocess.run([sys.executable, str(REPO / 'main.py'), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_main_evaluate_exits_zero(members, tmp_path):
  result = run_main('--mode=evaluate', f'--config={REPO / "configs/default.py"}',
                    f'--workdir={members["a"]}', cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'top-1' in result.stdout


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_main_bad_member_exits_two_with_one_line(tmp_path):
  # The default members are runs/vgg11, ... relative to the (empty) working directory.
  result = run_main('--mode=predict_ensemble', f'--config={REPO / "configs/ensemble.py"}',
                    f'--workdir={tmp_path / "ensemble"}', cwd=tmp_path)
  assert result.returncode == 2
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert errors == ["error: member '11': workdir runs/vgg11 does not exist; train it first: "
                    'python main.py --config=configs/vgg11.py --workdir=runs/vgg11']
  assert not (tmp_path / 'ensemble').exists()
