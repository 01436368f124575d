"""`dataset='image_folder'`: class folders (or their zip) prepared through the TFDS builder."""

import collections
import csv
import io
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from configs import default
from input_pipeline import folder_sample
from input_pipeline import image_folder
from input_pipeline import pipeline
from vgg_flax.modes import own_images
from vgg_flax.workdir import files

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """3 shapes classes of odd sizes and formats: 12 train and 4 val images each, 5 test."""
  return folder_sample.write_folder(tmp_path_factory.mktemp('photos'), num_classes=3,
                                    train_per_class=12, val_per_class=4, test_images=5)


def folder_config(source, data_dir, **fields):
  config = default.get_config()
  config.dataset = 'image_folder'
  config.data_source, config.data_dir = str(source), str(data_dir)
  config.image_size, config.progress_bar = SIZE, False
  config.batch_size = config.eval_batch_size = 8
  for name, value in fields.items():
    config[name] = value
  return config


def examples(dataset, split):
  """{file_name: (label, image)} of a prepared split."""
  config = folder_config('', '', cache=False)
  found = {}
  for batch in dataset.eval_batches(config, split):
    for name, label, image, real in zip(batch['file_name'], batch['label'], batch['image'],
                                        batch['mask']):
      if real:
        found[name] = (int(label), image)
  return found


def test_classes_are_the_sorted_folders_and_labels_follow_them(photos, tmp_path):
  dataset = pipeline.open_dataset(folder_config(photos, tmp_path))
  classes = sorted(p.name for p in (photos / 'train').iterdir())
  assert dataset.info.label_names == dataset.info.class_names == tuple(classes)
  assert dataset.info.split_sizes == {'train': 36, 'validation': 12, 'test': 5}
  assert dataset.info.image_shape == (SIZE, SIZE, 3)
  for split in ('train', 'validation'):
    found = examples(dataset, split)
    assert all(classes[label] == name.split('/')[0] for name, (label, _) in found.items())
  assert {label for label, _ in examples(dataset, 'test').values()} == {-1}


def test_without_val_a_seeded_stratified_share_is_held_out(tmp_path):
  source = folder_sample.write_folder(tmp_path / 'src', kind='patches', num_classes=3,
                                      train_per_class=20, val_per_class=0, test_images=0,
                                      image_size=SIZE)
  held_out = lambda seed, fraction=0.1: image_folder.builder_config(
      source, image_size=SIZE, val_fraction=fraction, split_seed=seed).held_out
  assert held_out(0) == held_out(0) != held_out(1)
  assert collections.Counter(p.split('/')[0] for p in held_out(0, 0.25)) == {
      'bottom_right': 5, 'top_left': 5, 'top_right': 5}
  dataset = pipeline.open_dataset(folder_config(source, tmp_path / 'tfds', val_fraction=0.25,
                                                split_seed=3))
  train, validation = examples(dataset, 'train'), examples(dataset, 'validation')
  assert sorted(validation) == sorted(held_out(3, 0.25))
  assert not set(train) & set(validation) and len(train) + len(validation) == 60


def test_odd_sizes_and_formats_are_stored_as_predict_images_reads_them(photos, tmp_path):
  source = tmp_path / 'odd'
  rng = np.random.default_rng(0)
  cases = {'a/wide.png': ('PNG', 'RGBA', (100, 37)), 'a/tiny.gif': ('GIF', 'P', (7, 9)),
           'a/gray.jpg': ('JPEG', 'L', (SIZE, SIZE)), 'b/kept.jpg': ('JPEG', 'RGB', (SIZE, SIZE)),
           'b/big.bmp': ('BMP', 'RGB', (300, 200)), 'b/photo.webp': ('WEBP', 'RGB', (50, 70)),
           'b/palette.png': ('PNG', 'P', (40, 40)), 'b/gray.png': ('PNG', 'L', (33, 31))}
  for name, (fmt, mode, size) in cases.items():
    path = source / 'train' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, fmt)
  dataset = pipeline.open_dataset(folder_config(source, tmp_path / 'tfds', val_fraction=0.5))
  stored = {**examples(dataset, 'train'), **examples(dataset, 'validation')}
  assert sorted(stored) == sorted(cases)
  for name, (_, image) in stored.items():
    expected = own_images.load_image(str(source / 'train' / name), (SIZE, SIZE, 3))
    np.testing.assert_array_equal(image, expected, err_msg=name)
  gray = stored['a/gray.jpg'][1]
  assert (gray[..., 0] == gray[..., 2]).all()  # Grayscale: three equal channels.


def test_a_zip_with_a_top_folder_reads_as_the_folder(photos, tmp_path):
  zip_path = tmp_path / 'photos.zip'
  with zipfile.ZipFile(zip_path, 'w') as archive:
    for path in sorted(photos.rglob('*')):
      archive.write(path, f'photos/{path.relative_to(photos)}')
    archive.writestr('__MACOSX/photos/._x.jpg', b'resource fork')  # Ignored.
  from_zip = pipeline.open_dataset(folder_config(zip_path, tmp_path / 'z'))
  from_folder = pipeline.open_dataset(folder_config(photos, tmp_path / 'f'))
  assert from_zip.info == from_folder.info
  for split in ('train', 'validation', 'test'):
    a, b = examples(from_zip, split), examples(from_folder, split)
    assert sorted(a) == sorted(b)
    for name in a:
      np.testing.assert_array_equal(a[name][1], b[name][1])


def damage(photos: pathlib.Path, root: pathlib.Path, case: str) -> tuple[pathlib.Path, str]:
  """A copy of the folder with one fault: (source, what the one-line error must say)."""
  source = pathlib.Path(shutil.copytree(photos, root / case.replace(' ', '_')))
  first_class = sorted((source / 'train').iterdir())[0]
  if case == 'empty class folder':
    for image in first_class.iterdir():
      image.unlink()
    return source, f'{first_class}: no images in class folder'
  if case == 'val class missing from train':
    (source / 'val' / 'zebra').mkdir()
    shutil.copy(next(first_class.iterdir()), source / 'val' / 'zebra' / 'z.jpg')
    return source, f"{source / 'val' / 'zebra'}: class 'zebra' is not a folder of train/"
  if case == 'not an image':
    (first_class / 'notes.txt').write_text('not an image')
    return source, f'{first_class / "notes.txt"}: not a readable image'
  if case == 'file outside the class folders':
    (source / 'train' / 'stray.jpg').write_bytes((first_class / os.listdir(first_class)[0])
                                                 .read_bytes())
    return source, f"{source / 'train' / 'stray.jpg'}: a file outside the class folders"
  raise ValueError(case)


CASES = ('empty class folder', 'val class missing from train', 'not an image',
         'file outside the class folders')


@pytest.mark.parametrize('case', CASES)
def test_a_bad_folder_is_one_data_error_naming_the_file(photos, tmp_path, case):
  source, expected = damage(photos, tmp_path, case)
  with pytest.raises(pipeline.DataError) as raised:
    pipeline.open_dataset(folder_config(source, tmp_path / 'tfds'))
  assert expected in str(raised.value) and '\n' not in str(raised.value)


@pytest.mark.parametrize('what', ['file', 'class folder'])
def test_a_link_leading_out_of_the_folder_is_refused(photos, tmp_path, what):
  source = pathlib.Path(shutil.copytree(photos, tmp_path / 'linked'))
  outside = tmp_path / 'outside'
  (outside / 'secret').mkdir(parents=True)
  shutil.copy(next((photos / 'train').rglob('*.jpg')), outside / 'secret' / 'secret.jpg')
  if what == 'file':
    link = next((source / 'train').iterdir()) / 'link.jpg'
    link.symlink_to(outside / 'secret' / 'secret.jpg')
  else:
    link = source / 'train' / 'secret'
    link.symlink_to(outside / 'secret', target_is_directory=True)
  with pytest.raises(pipeline.DataError) as raised:
    pipeline.open_dataset(folder_config(source, tmp_path / 'tfds', val_fraction=0.5))
  assert f'{link}: leads outside the source' in str(raised.value)


def test_a_zip_member_named_like_a_path_is_refused(photos, tmp_path):
  zip_path = tmp_path / 'crafted.zip'
  with zipfile.ZipFile(zip_path, 'w') as archive:
    for path in sorted((photos / 'train').rglob('*')):
      archive.write(path, f'train/{path.relative_to(photos / "train")}')
    first_class = sorted(p.name for p in (photos / 'train').iterdir())[0]
    archive.writestr(f'train/{first_class}/x\\..\\..\\evil.jpg', b'not read')
  with pytest.raises(pipeline.DataError) as raised:
    pipeline.open_dataset(folder_config(zip_path, tmp_path / 'tfds'))
  assert 'is not a plain file name' in str(raised.value) and '\n' not in str(raised.value)


def test_skip_corrupt_skips_and_counts_a_non_image(photos, tmp_path, caplog):
  source, _ = damage(photos, tmp_path, 'not an image')
  dataset = pipeline.open_dataset(folder_config(source, tmp_path / 'tfds', skip_corrupt=True))
  assert dataset.info.split_sizes['train'] == 36
  assert 'skipped 1 unreadable images of 37 in split train' in caplog.text


def main_py(*args) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen([sys.executable, 'main.py', *map(str, args)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # Three main.py processes (about 10 s of imports each).
def test_bad_folders_through_main_exit_2_with_one_line(photos, tmp_path):
  runs = {}
  for case in CASES[:3]:
    source, expected = damage(photos, tmp_path, case)
    runs[case] = expected, main_py('--config=configs/image_folder.py',
                                   f'--config.data_source={source}',
                                   f'--config.data_dir={tmp_path / "tfds"}',
                                   f'--workdir={tmp_path / "runs" / case.replace(" ", "_")}')
  for case, (expected, process) in runs.items():
    output = process.communicate(timeout=240)[0]
    errors = [line for line in output.splitlines() if line.startswith('error: ')]
    assert process.returncode == 2, (case, output[-2000:])
    assert 'Traceback' not in output and len(errors) == 1 and expected in errors[0], output


@pytest.mark.slow  # Trains through main.py, then predicts and explains.
def test_the_readmes_three_lines_train_predict_and_explain(tmp_path):
  # The patch classes: learnt in a few epochs (the shapes need minutes).
  source = folder_sample.write_folder(tmp_path / 'photos', kind='patches', num_classes=3,
                                      train_per_class=60, val_per_class=0, test_images=6,
                                      image_size=SIZE)
  workdir = tmp_path / 'run'
  common = ['--config=configs/image_folder.py', f'--workdir={workdir}']
  train = main_py(*common, f'--config.data_source={source}',
                  f'--config.data_dir={tmp_path / "tfds"}', '--config.image_size=32',
                  '--config.model.width=8', '--config.model.hidden_units=64',
                  '--config.batch_size=16', '--config.num_epochs=8',
                  '--config.early_stopping.patience=8',
                  # A mirrored or shifted patch would sit at another class's place.
                  '--config.augment.flip=False', '--config.augment.crop_padding=0',
                  '--config.progress_bar=False')
  output = train.communicate(timeout=400)[0]
  assert train.returncode == 0, output[-3000:]
  history = files.read_history(workdir / 'history.csv')
  assert history[-1]['val_accuracy'] >= 0.8, history  # Chance: 1/3.
  with open(workdir / files.HELD_OUT_FILE, newline='') as f:
    held_out = list(csv.DictReader(f))
  assert len(held_out) == 36 and held_out[0]['path'].startswith(held_out[0]['class'] + '/')

  predict = main_py(*common, '--mode=predict', f'--config.predict_images={source / "test"}',
                    '--config.explain=True')
  output = predict.communicate(timeout=240)[0]
  assert predict.returncode == 0, output[-3000:]
  with open(workdir / 'image_predictions.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 6 and {r['wnid'] for r in rows} <= set(held_out_classes(held_out))
  assert len(list((workdir / 'explanations').glob('img_*.png'))) == 6
  assert (workdir / 'plots' / 'gradcam_grid.png').is_file()


def held_out_classes(rows):
  return {row['class'] for row in rows}
