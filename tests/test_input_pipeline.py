"""The TFDS builder and the tf.data pipeline on generated samples (folder and zip)."""

import ast
import io
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from input_pipeline import pipeline
from input_pipeline import synthetic
from input_pipeline import tiny_imagenet
from input_pipeline.tiny_imagenet import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(params=['folder', 'zip'])
def config(request, data_config, sample_zip):
  """`data_config` on the folder and on the zip of the same sample."""
  if request.param == 'zip':
    data_config.data_source = str(sample_zip)
  return data_config


def sorted_wnids(folder):
  return sorted((folder / 'wnids.txt').read_text().split())


def val_labels(folder):
  lines = (folder / 'val' / 'val_annotations.txt').read_text().splitlines()
  return {l.split('\t')[0]: l.split('\t')[1] for l in lines}


def all_eval_examples(config, dataset, split):
  """Every eval batch of a split, concatenated."""
  batches = list(dataset.eval_batches(config, split))
  assert len(batches) == pipeline.num_eval_batches(config, dataset.info, split)
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def copy_sample(sample_folder, tmp_path):
  """A copy of the sample to damage."""
  return shutil.copytree(sample_folder, tmp_path / 'tiny-imagenet-200')


def test_split_sizes_and_classes(config, sample_folder, sample_params):
  info = pipeline.get_dataset_info(config)
  n = sample_params['num_classes']
  assert info.split_sizes == {'train': n * sample_params['train_per_class'],
                              'validation': n * sample_params['val_per_class'],
                              'test': sample_params['test_images']}
  assert info.num_classes == n and info.image_shape == (64, 64, 3)
  assert info.label_names == tuple(sorted_wnids(sample_folder))  # Sorted, not file order.
  words = dict(l.split('\t') for l in (sample_folder / 'words.txt').read_text().splitlines())
  assert info.class_names == tuple(words[w] for w in info.label_names)


def test_labels_follow_folders_and_annotations(config, sample_folder):
  dataset = pipeline.open_dataset(config)
  wnids = sorted_wnids(sample_folder)
  val = all_eval_examples(config, dataset, 'validation')
  labels = dict(zip(val['file_name'], val['label']))
  for name, wnid in list(val_labels(sample_folder).items())[:10]:
    assert labels[name] == wnids.index(wnid), name
  train = all_eval_examples(config, dataset, 'train')
  train_labels = dict(zip(train['file_name'], train['label']))
  for wnid in wnids:
    for i in (0, 5, 23):
      assert train_labels[f'{wnid}_{i}.JPEG'] == wnids.index(wnid)
  test = all_eval_examples(config, dataset, 'test')
  assert set(test['label']) == {-1}


def test_images_match_the_files(data_config, sample_folder):
  """Pixels are the JPEGs' own; grayscale files come out as 3 equal channels."""
  train = all_eval_examples(data_config, pipeline.open_dataset(data_config), 'train')
  images = dict(zip(train['file_name'], train['image']))
  gray = 0
  for path in sorted((sample_folder / 'train').glob('*/images/*.JPEG')):
    with Image.open(path) as file:
      mode, expected = file.mode, np.asarray(file.convert('RGB'), np.int16)
    image = images[path.name]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.abs(image - expected).mean() < 2.0, path.name  # libjpeg settings differ.
    if mode == 'L':
      gray += 1
      assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    else:
      assert not (image[..., 0] == image[..., 2]).all()
  assert gray >= 1  # The sample holds grayscale files to test.


def test_eval_batches_cover_each_example_once(data_config, sample_folder):
  data_config.eval_batch_size = 10  # 32 val, 12 test: both need padding.
  dataset = pipeline.open_dataset(data_config)
  info = dataset.info
  for split, names in [('validation', list(val_labels(sample_folder))),
                       ('test', [p.name for p in (sample_folder / 'test' / 'images').iterdir()])]:
    examples = all_eval_examples(data_config, dataset, split)
    assert examples['mask'].sum() == info.split_sizes[split]
    assert len(examples['mask']) == 10 * pipeline.num_eval_batches(data_config, info, split)
    in_order = sorted(names, key=tiny_imagenet.natural_key)
    assert list(examples['file_name'][examples['mask']]) == in_order
    padding = ~examples['mask']
    assert set(examples['file_name'][padding]) == {''} and set(examples['label'][padding]) == {-1}
    assert examples['image'][padding].max() == 0
    assert examples['label'].dtype == np.int32 and examples['image'].dtype == np.uint8


def test_train_batches_seeded_by_seed_and_epoch(data_config):
  dataset = pipeline.open_dataset(data_config)
  info = dataset.info
  steps = pipeline.train_steps_per_epoch(data_config, info)
  assert steps == 96 // 16
  epoch = lambda e: list(dataset.train_batches(data_config, epoch=e))
  first, again, second = epoch(0), epoch(0), epoch(1)
  assert len(first) == steps
  assert first[0]['image'].shape == (16, 64, 64, 3) and first[0]['label'].dtype == np.int32
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  assert any((a['label'] != b['label']).any() for a, b in zip(first, second))
  # Each epoch sees every train image once (96 = 6 full batches of 16).
  labels = np.concatenate([b['label'] for b in second])
  assert np.bincount(labels).tolist() == [24] * 4
  data_config.steps_per_epoch = 2
  assert len(epoch(0)) == pipeline.train_steps_per_epoch(data_config, info) == 2


def test_order_without_cache_is_seeded_too(data_config):
  data_config.cache = False
  dataset = pipeline.open_dataset(data_config)
  a = [b['label'] for b in dataset.train_batches(data_config, epoch=3)]
  b = [b['label'] for b in dataset.train_batches(data_config, epoch=3)]
  np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
  assert len(a) == 6


def test_sources_in_one_data_dir_do_not_collide(data_config, tmp_path):
  other = synthetic.write_sample(tmp_path, num_classes=3, train_per_class=5, val_per_class=2,
                                 test_images=1, seed=7)
  first = pipeline.get_dataset_info(data_config)
  data_config.data_source = str(other)
  second = pipeline.get_dataset_info(data_config)
  assert (first.num_classes, second.num_classes) == (4, 3)
  assert second.split_sizes == {'train': 15, 'validation': 6, 'test': 1}
  assert set(first.label_names).isdisjoint(second.label_names)


def test_generated_sample_when_enabled(data_config):
  data_config.data_source = ''
  data_config.sample.enabled = True
  data_config.sample.update(num_classes=2, train_per_class=8, val_per_class=2, test_images=2)
  source = pipeline.resolve_data_source(data_config)
  assert source.startswith(data_config.data_dir) and source.endswith('tiny-imagenet-200')
  assert pipeline.get_dataset_info(data_config).split_sizes['train'] == 16
  data_config.sample.num_classes = 3  # Other parameters: another sample.
  assert pipeline.resolve_data_source(data_config) != source


def test_shares_of_two_processes(data_config, monkeypatch):
  """Each process reads its own half; together they cover each example exactly once."""
  data_config.eval_batch_size = 10
  dataset = pipeline.open_dataset(data_config)
  info = dataset.info
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  shares = []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    shares.append(all_eval_examples(data_config, dataset, 'validation'))
    train = list(dataset.train_batches(data_config, epoch=0))
    assert len(train) == 6 and train[0]['image'].shape[0] == 8
  assert len(shares[0]['mask']) == len(shares[1]['mask']) == 20
  names = [n for s in shares for n in s['file_name'][s['mask']]]
  assert len(names) == len(set(names)) == info.split_sizes['validation']


def test_unknown_split_names_the_available_ones(data_config):
  dataset = pipeline.open_dataset(data_config)
  with pytest.raises(DataError, match=r"split 'val' .*train, validation, test"):
    list(dataset.eval_batches(data_config, 'val'))


def prepare(folder, data_dir, **kwargs):
  builder = tiny_imagenet.make_builder(folder, data_dir=str(data_dir), **kwargs)
  builder.download_and_prepare()
  return builder


def test_truncated_jpeg_is_a_clear_error_or_skipped(sample_folder, tmp_path):
  folder = copy_sample(sample_folder, tmp_path)
  bad = folder / 'val' / 'images' / 'val_3.JPEG'
  bad.write_bytes(bad.read_bytes()[:400])
  with pytest.raises(DataError, match=r'val_3\.JPEG: cannot decode .*expected a complete'):
    prepare(folder, tmp_path / 'tfds')
  builder = prepare(folder, tmp_path / 'tfds', skip_corrupt=True)
  assert builder.info.splits['validation'].num_examples == 31


def test_empty_image_is_a_clear_error(sample_folder, tmp_path):
  folder = copy_sample(sample_folder, tmp_path)
  wnid = sorted_wnids(folder)[0]
  (folder / 'train' / wnid / 'images' / f'{wnid}_2.JPEG').write_bytes(b'')
  with pytest.raises(DataError, match=rf'{wnid}_2\.JPEG: empty file; expected a 64x64 JPEG'):
    prepare(folder, tmp_path / 'tfds')


@pytest.mark.parametrize('missing, message', [
    ('val/val_annotations.txt', r'val_annotations\.txt not found; expected tab-separated'),
    ('wnids.txt', r'wnids\.txt not found; expected one wnid'),
    ('test', r'test: split folder not found; expected the test images'),
])
def test_missing_files_are_clear_errors(sample_folder, tmp_path, missing, message):
  folder = copy_sample(sample_folder, tmp_path)
  path = folder / missing
  if path.is_dir():
    shutil.rmtree(path)
  else:
    path.unlink()
  with pytest.raises(DataError, match=message) as error:
    prepare(folder, tmp_path / 'tfds')
  assert '\n' not in str(error.value)


def test_unknown_wnid_in_annotations(sample_folder, tmp_path):
  folder = copy_sample(sample_folder, tmp_path)
  annotations = folder / 'val' / 'val_annotations.txt'
  lines = annotations.read_text().splitlines()
  lines[4] = '\t'.join(['val_4.JPEG', 'n99999999'] + lines[4].split('\t')[2:])
  annotations.write_text('\n'.join(lines) + '\n')
  with pytest.raises(DataError, match=r'val_annotations\.txt:5: wnid n99999999 of val_4\.JPEG '
                                      r'is not in wnids\.txt'):
    prepare(folder, tmp_path / 'tfds')


def encode(image, fmt='JPEG'):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def test_odd_images_decode_to_64px_rgb():
  rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
  kept = encode(rgb)
  assert tiny_imagenet.decode_image(kept, 'rgb') is kept  # Stored as it is.
  cmyk = tiny_imagenet.decode_image(encode(rgb.convert('CMYK')), 'cmyk')
  assert cmyk.shape == (64, 64, 3) and np.abs(cmyk - np.asarray(rgb, np.int16)).mean() < 12
  odd = tiny_imagenet.decode_image(encode(rgb.resize((50, 40)), 'PNG'), 'odd')
  assert odd.shape == (64, 64, 3) and odd.dtype == np.uint8


def test_offline_without_source_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setattr(tiny_imagenet, 'URL', 'http://127.0.0.1:9/tiny-imagenet-200.zip')
  with pytest.raises(DataError, match=r'download tiny-imagenet-200\.zip .*config\.data_source'):
    tiny_imagenet.make_builder('', data_dir=str(tmp_path))


# --- The Dataset object: opened once per run, owns its caches, no module state -------------


def count_reads(monkeypatch, dataset) -> list[str]:
  """Records the split of each `as_dataset` call of a Dataset's builder (one per read)."""
  reads, as_dataset = [], dataset.builder.as_dataset

  def counted(*args, **kwargs):
    reads.append(getattr(kwargs['split'], 'split', kwargs['split']))  # For this process.
    return as_dataset(*args, **kwargs)

  monkeypatch.setattr(dataset.builder, 'as_dataset', counted)
  return reads


def test_dataset_serves_epochs_without_reading_again(data_config, monkeypatch):
  data_config.cache = True
  dataset = pipeline.open_dataset(data_config)
  reads = count_reads(monkeypatch, dataset)
  epochs = [list(dataset.train_batches(data_config, epoch=e)) for e in (1, 2, 3)]
  evals = [all_eval_examples(data_config, dataset, 'validation') for _ in range(3)]
  assert reads == ['train', 'validation']  # Decoded once; the other epochs reuse it.
  assert [len(e) for e in epochs] == [6, 6, 6]
  assert all(np.bincount(np.concatenate([b['label'] for b in e])).tolist() == [24] * 4
             for e in epochs)
  for again in evals[1:]:
    np.testing.assert_array_equal(again['image'], evals[0]['image'])
    assert list(again['file_name']) == list(evals[0]['file_name'])


def test_two_datasets_share_no_cache(data_config, monkeypatch):
  data_config.cache = True
  first, second = pipeline.open_dataset(data_config), pipeline.open_dataset(data_config)
  first_reads, second_reads = count_reads(monkeypatch, first), count_reads(monkeypatch, second)
  one = list(first.train_batches(data_config, epoch=4))
  assert (first_reads, second_reads) == (['train'], [])
  other = list(second.train_batches(data_config, epoch=4))
  assert (first_reads, second_reads) == (['train'], ['train'])  # Decoded its own copy.
  for a, b in zip(one, other, strict=True):  # The same data, seed and epoch: the same order.
    np.testing.assert_array_equal(a['image'], b['image'])
  del first, one  # Whatever the first decoded goes with it; the second still serves.
  assert len(list(second.train_batches(data_config, epoch=5))) == 6
  assert second_reads == ['train']


def test_second_open_reuses_the_prepared_files(data_config, monkeypatch):
  first = pipeline.open_dataset(data_config)  # Prepared by now (here or by earlier tests).

  def prepare_again(*args, **kwargs):
    raise AssertionError('prepared a second time')

  monkeypatch.setattr(tiny_imagenet.TinyImagenet, '_split_generators', prepare_again)
  second = pipeline.open_dataset(data_config)
  assert second.info == first.info and second is not first
  assert len(all_eval_examples(data_config, second, 'test')['mask']) == 16


def test_module_keeps_no_mutable_state():
  """No module-level dict, list or set, and no memoised function: state lives in Datasets."""
  path = pathlib.Path(pipeline.__file__)
  tree = ast.parse(path.read_text())
  mutable = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
  for node in tree.body:
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
      is_container = isinstance(node.value, mutable) or (
          isinstance(node.value, ast.Call) and ast.unparse(node.value.func) in (
              'dict', 'list', 'set', 'collections.defaultdict', 'collections.OrderedDict'))
      assert not is_container, f'{path.name}:{node.lineno}: {ast.unparse(node)}'
    if isinstance(node, ast.FunctionDef):
      decorators = [ast.unparse(d) for d in node.decorator_list]
      assert not any('cache' in d for d in decorators), (node.name, decorators)
  for name, value in vars(pipeline).items():
    if not name.startswith('__'):
      assert not isinstance(value, (dict, list, set, bytearray)), name
      assert not hasattr(value, 'cache_info'), name  # functools.lru_cache / cache.


def test_tensorflow_kept_off_the_gpus_in_one_place(monkeypatch):
  """One call hides the GPUs from TensorFlow: at its first use, through the pipeline."""
  repo = pathlib.Path(pipeline.__file__).resolve().parents[1]
  code = [p for p in repo.rglob('*.py') if not {'tests', '.venv', 'venv'} & set(p.parts)]
  calls = [f'{p.relative_to(repo)}:{n}' for p in code
           for n, line in enumerate(p.read_text().splitlines(), 1)
           if 'set_visible_devices' in line]
  assert len(calls) == 1 and calls[0].startswith('input_pipeline/pipeline.py:'), calls
  seen = []

  def too_late(devices, kind):
    seen.append((devices, kind))
    raise RuntimeError('Visible devices cannot be modified after being initialized')

  monkeypatch.setattr(pipeline.tf.config, 'set_visible_devices', too_late)
  pipeline.hide_gpus_from_tf()  # Too late is no error: TF had set up its devices already.
  assert seen == [([], 'GPU')]


FIRST_USE_OF_TENSORFLOW = """
import sys
import vgg_flax.cli.dispatch  # All that main.py imports before a mode runs.
print('imported at start:', 'tensorflow' in sys.modules)
import tensorflow  # The real module: the lazy ones resolve to it.
calls = []
tensorflow.config.set_visible_devices = lambda *args: calls.append(args)
from vgg_flax.train import tensorboard_log
tensorboard_log.tf.constant(0)
print('hidden:', calls)
"""


@pytest.mark.slow  # A fresh process: this session imported TensorFlow long ago.
def test_main_imports_tensorflow_at_first_use_and_hides_the_gpus_then():
  result = subprocess.run([sys.executable, '-c', FIRST_USE_OF_TENSORFLOW], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == ['imported at start: False', "hidden: [([], 'GPU')]"]

