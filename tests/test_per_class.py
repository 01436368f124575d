"""Per-class results of `--mode=evaluate`: the CSV's numbers and the confusion figure."""

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import converted_workdir
from vgg_flax.modes import predictions as inference
from vgg_flax.modes import per_class
from vgg_flax.modes import one_model as predict
from vgg_flax import plots
from vgg_flax.workdir import restore

REPO = pathlib.Path(__file__).resolve().parents[1]
# Four classes, crafted: class 0 right 3 of 4 (one taken for 2); class 1 twice taken for 2
# and twice for 3 (a tie: the lower index, 2, is named); class 2 all right; class 3 has no
# images.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 0, 2, 0, 2, 3, 1, 2, 3, 2, 2])
WNIDS = ('n0', 'n1', 'n2', 'n3')
WORDS = ('zero, nought', 'one', 'two', 'three')


def test_confusion_matrix_counts_true_rows_predicted_columns():
  np.testing.assert_array_equal(
      per_class.confusion_matrix(LABELS, PREDICTIONS, 4),
      [[3, 0, 1, 0], [0, 1, 2, 2], [0, 0, 2, 0], [0, 0, 0, 0]])


def test_per_class_rows():
  confusion = per_class.confusion_matrix(LABELS, PREDICTIONS, 4)
  assert per_class.per_class_rows(confusion, WNIDS, WORDS) == [
      [0, 'n0', 'zero, nought', 4, '0.7500', 2, 'n2', 'two', 1],
      [1, 'n1', 'one', 5, '0.2000', 2, 'n2', 'two', 2],
      [2, 'n2', 'two', 2, '1.0000', -1, '', '', 0],
      [3, 'n3', 'three', 0, '', -1, '', '', 0],
  ]


def test_most_confused_pairs_most_frequent_first():
  confusion = per_class.confusion_matrix(LABELS, PREDICTIONS, 4)
  assert per_class.most_confused_pairs(confusion, 10) == [(1, 2, 2), (1, 3, 2), (0, 2, 1)]
  assert per_class.most_confused_pairs(confusion, 1) == [(1, 2, 2)]


@pytest.mark.parametrize('num_classes', [4, 200])
def test_confusion_figure_is_a_png_of_fixed_size(tmp_path, num_classes):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, num_classes, 5000)
  predictions = np.where(rng.random(5000) < 0.5, labels, rng.integers(0, num_classes, 5000))
  path = tmp_path / 'plots' / 'confusion.png'
  per_class.draw_confusion(path, per_class.confusion_matrix(labels, predictions, num_classes),
                           [f'class {i}, more words' for i in range(num_classes)])
  with Image.open(path) as image:
    assert image.format == 'PNG'
    assert image.size == (plots.CONFUSION_INCHES[0] * plots.CHART_DPI,
                          plots.CONFUSION_INCHES[1] * plots.CHART_DPI)
    pixels = np.asarray(image.convert('L'))
  assert pixels.std() > 10  # Something is drawn, not a blank page.
  assert [p.name for p in path.parent.iterdir()] == ['confusion.png']  # No temp files left.


# --- --mode=evaluate ------------------------------------------------------------------------


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory, sample_folder, tfds_data_dir, sample_params):
  """A workdir evaluated on the validation split, and its predictions there."""
  workdir = tmp_path_factory.mktemp('per_class') / 'run'
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  converted_workdir.write_workdir(workdir, config, sample_params['num_classes'], seed=3)
  results = predict.evaluate_workdir(config, str(workdir))
  restored = restore.restore_model('run', workdir, runtime=config, data=config)
  return workdir, results, inference.predict_split(restored, 'validation'), restored.info


def read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_evaluate_writes_per_class_accuracy(evaluated, sample_params):
  workdir, results, predictions, info = evaluated
  rows = read_csv(workdir / 'per_class_accuracy.csv')
  assert list(rows[0]) == list(per_class.PER_CLASS_COLUMNS)
  assert [int(r['class_index']) for r in rows] == list(range(info.num_classes))
  assert [r['wnid'] for r in rows] == list(info.label_names)
  assert [r['class_words'] for r in rows] == list(info.class_names)
  assert [int(r['images']) for r in rows] == [sample_params['val_per_class']] * 4
  labels, predicted = predictions.labels, predictions.predictions
  for index, row in enumerate(rows):
    mine = labels == index
    assert float(row['top1_accuracy']) == pytest.approx(np.mean(predicted[mine] == index),
                                                        abs=5e-5)
    wrong = predicted[mine & (predicted != index)]
    if len(wrong):
      counts = np.bincount(wrong, minlength=info.num_classes)
      assert int(row['confused_with_index']) == counts.argmax()
      assert int(row['confused_count']) == counts.max()
      assert row['confused_with_wnid'] == info.label_names[counts.argmax()]
  # The per-class numbers add up to the overall top-1.
  correct = sum(float(r['top1_accuracy']) * int(r['images']) for r in rows)
  assert correct / results['num_images'] == pytest.approx(results['accuracy'], abs=1e-4)
  assert 0 < results['accuracy'] < 1  # Crafted variables: some right, some wrong.


def test_evaluate_draws_the_confusion_figure(evaluated):
  workdir, results, _, _ = evaluated
  with Image.open(workdir / 'plots' / 'confusion.png') as image:
    assert image.format == 'PNG' and image.size == (1600, 800)
  assert json.loads((workdir / 'eval_results.json').read_text()) == results
  assert results['tta'] == 'none'


@pytest.mark.slow
def test_main_evaluate_with_flip_tta(evaluated, tmp_path):
  workdir, results, _, _ = evaluated
  result = subprocess.run(
      [sys.executable, str(REPO / 'main.py'), '--mode=evaluate',
       f'--config={REPO / "configs/default.py"}', f'--workdir={workdir}', '--config.tta=flip'],
      cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  flipped = json.loads((workdir / 'eval_results.json').read_text())
  assert flipped['tta'] == 'flip' and 'tta flip' in result.stdout
  assert flipped['num_images'] == results['num_images']
  assert flipped['loss'] != pytest.approx(results['loss'], abs=1e-6)
  assert (workdir / 'per_class_accuracy.csv').exists()
