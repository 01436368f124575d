"""`--mode=predict --config.predict_images=PATH`: finding, reading and predicting own images."""

import csv
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import converted_workdir
from input_pipeline import pipeline
from input_pipeline import tiny_imagenet
from vgg_flax.modes import predictions as inference
from vgg_flax.modes import own_images
from vgg_flax.modes import one_model as predict
from vgg_flax import plots
from vgg_flax.workdir import restore

REPO = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (64, 64, 3)


def write_image(path, mode, size, fmt, seed=0):
  rng = np.random.default_rng(seed)
  channels = {'L': 1, 'RGB': 3, 'RGBA': 4, 'CMYK': 4}[mode]
  pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
  Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path, fmt)
  return path


def read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


# --- Finding ---------------------------------------------------------------------------------


def test_a_file_a_folder_and_a_glob(tmp_path):
  (tmp_path / 'sub').mkdir()
  for name in ('img_10.jpg', 'img_2.PNG', 'sub/deep.jpeg', 'notes.txt'):
    (tmp_path / name).write_bytes(b'x')
  assert own_images.find_images(str(tmp_path / 'img_2.PNG')) == [str(tmp_path / 'img_2.PNG')]
  # A folder: image suffixes only (any case), recursively, in natural order.
  assert own_images.find_images(str(tmp_path)) == [
      str(tmp_path / 'img_2.PNG'), str(tmp_path / 'img_10.jpg'), str(tmp_path / 'sub/deep.jpeg')]
  assert own_images.find_images(str(tmp_path / '**' / '*.jp*g')) == [
      str(tmp_path / 'img_10.jpg'), str(tmp_path / 'sub/deep.jpeg')]


@pytest.mark.parametrize('spec', ['missing/*.jpg', 'nope.png'])
def test_nothing_matches(tmp_path, spec):
  with pytest.raises(pipeline.DataError) as raised:
    own_images.find_images(str(tmp_path / spec))
  assert str(raised.value).startswith(f"predict_images='{tmp_path / spec}' matches no file")
  assert '\n' not in str(raised.value)


def test_a_folder_without_images(tmp_path):
  (tmp_path / 'readme.txt').write_text('no images')
  with pytest.raises(pipeline.DataError, match='holds no image files'):
    own_images.find_images(str(tmp_path))


# --- Reading, as the training data is prepared ----------------------------------------------


def test_sample_jpegs_read_to_the_pixels_the_pipeline_gives(sample_folder, tfds_data_dir):
  config = converted_workdir.small_config(sample_folder, tfds_data_dir)
  dataset = pipeline.open_dataset(config)
  folder = pathlib.Path(sample_folder) / 'test' / 'images'
  compared = 0
  for batch in dataset.eval_batches(config, 'test'):
    for name, image, real in zip(batch['file_name'], batch['image'], batch['mask']):
      if real:
        np.testing.assert_array_equal(own_images.load_image(str(folder / name), SHAPE), image)
        compared += 1
  assert compared == dataset.info.split_sizes['test']


@pytest.mark.parametrize('mode,size,fmt', [('RGBA', (100, 37), 'PNG'), ('CMYK', (80, 80), 'JPEG'),
                                           ('L', (64, 64), 'PNG'), ('RGB', (20, 90), 'BMP')])
def test_any_mode_and_size_is_converted_like_the_builder(tmp_path, mode, size, fmt):
  path = write_image(tmp_path / f'image.{fmt.lower()}', mode, size, fmt)
  image = own_images.load_image(str(path), SHAPE)
  assert image.shape == SHAPE and image.dtype == np.uint8
  np.testing.assert_array_equal(image, tiny_imagenet.decode_image(path.read_bytes(), 'x'))


def test_grayscale_jpeg_of_the_stored_size_has_three_equal_channels(tmp_path):
  path = write_image(tmp_path / 'gray.jpg', 'L', (64, 64), 'JPEG')
  image = own_images.load_image(str(path), SHAPE)
  assert tiny_imagenet.decode_image(path.read_bytes(), 'x') == path.read_bytes()  # Kept.
  np.testing.assert_array_equal(
      image, tf.image.decode_image(path.read_bytes(), channels=3).numpy())
  assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


@pytest.mark.parametrize('content', [b'', b'not an image', 'truncated'])
def test_unreadable_file_is_named(tmp_path, content):
  path = tmp_path / 'bad.jpg'
  if content == 'truncated':
    write_image(path, 'RGB', (64, 64), 'JPEG')
    content = path.read_bytes()[:300]
  path.write_bytes(content)
  with pytest.raises(pipeline.DataError) as raised:
    own_images.load_image(str(path), SHAPE)
  message = str(raised.value)
  assert message.startswith(f'{path}: cannot read the image') and '\n' not in message
  assert 'skip_corrupt=True' in message


def test_skip_corrupt_skips_and_returns_the_skipped(tmp_path):
  good = write_image(tmp_path / 'good.png', 'RGB', (64, 64), 'PNG')
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'junk')
  images, read, skipped = own_images.load_images([str(bad), str(good)], SHAPE,
                                                 skip_corrupt=True)
  assert images.shape == (1, *SHAPE) and read == [str(good)] and skipped == [str(bad)]
  with pytest.raises(pipeline.DataError, match='bad.png'):
    own_images.load_images([str(good), str(bad)], SHAPE)
  with pytest.raises(pipeline.DataError, match='none of the 1 files'):
    own_images.load_images([str(bad)], SHAPE, skip_corrupt=True)


# --- Predicting -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, sample_folder, tfds_data_dir, sample_params):
  """A VGG-11 at 32 px: own images are stored at 64 px and resized on the device."""
  path = tmp_path_factory.mktemp('own') / 'run'
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  converted_workdir.write_workdir(path, config, sample_params['num_classes'])
  return path


@pytest.fixture(scope='module')
def test_split(workdir, sample_folder, tfds_data_dir):
  """The workdir's predictions on the test split, by file name."""
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  restored = restore.restore_model('run', workdir, runtime=config, data=config)
  predictions = inference.predict_split(restored, 'test')
  return dict(zip(predictions.file_names, predictions.probabilities)), restored.info


@pytest.fixture
def photos(tmp_path, sample_folder):
  """Five of the sample's test JPEGs (one in a subfolder) and a PNG of another size."""
  folder = tmp_path / 'photos'
  (folder / 'more').mkdir(parents=True)
  source = pathlib.Path(sample_folder) / 'test' / 'images'
  for i in range(4):
    shutil.copy(source / f'test_{i}.JPEG', folder / f'test_{i}.JPEG')
  shutil.copy(source / 'test_4.JPEG', folder / 'more' / 'test_4.JPEG')
  write_image(folder / 'wide.png', 'RGBA', (120, 50), 'PNG')
  return folder


def predict_config(sample_folder, tfds_data_dir, photos, **fields):
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  config.predict_images = str(photos)
  for key, value in fields.items():
    config[key] = value
  return config


def test_predictions_match_the_split_and_are_printed(workdir, test_split, photos,
                                                     sample_folder, tfds_data_dir, capsys):
  by_name, info = test_split
  path = predict.predict_workdir(predict_config(sample_folder, tfds_data_dir, photos),
                                 str(workdir))
  assert path == workdir / 'image_predictions.csv'
  rows = read_csv(path)
  assert list(rows[0]) == ['path', 'class_index', 'wnid', 'class_words', 'probability',
                           'top5_indices']
  assert [row['path'] for row in rows] == [
      str(photos / 'more/test_4.JPEG'), *(str(photos / f'test_{i}.JPEG') for i in range(4)),
      str(photos / 'wide.png')]
  for row in rows:
    top5 = [int(i) for i in row['top5_indices'].split()]
    assert top5[0] == int(row['class_index']) and len(set(top5)) == 4
    assert row['wnid'] == info.label_names[top5[0]]
    assert row['class_words'] == info.class_names[top5[0]]
    name = pathlib.Path(row['path']).name
    if name in by_name:  # The same JPEG predicts as in the split.
      assert top5 == list(np.argsort(-by_name[name], kind='stable'))
      assert float(row['probability']) == pytest.approx(by_name[name].max(), abs=2e-6)
  printed = [line for line in capsys.readouterr().out.splitlines() if ': ' in line]
  assert len(printed) == len(rows)
  assert printed[0].startswith(f'{rows[0]["path"]}: {plots.short_words(rows[0]["class_words"])}')


def test_unreadable_image_fails_before_writing(workdir, photos, sample_folder, tfds_data_dir):
  (photos / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  out = workdir / 'image_predictions.csv'
  out.unlink(missing_ok=True)
  with pytest.raises(pipeline.DataError) as raised:
    predict.predict_workdir(predict_config(sample_folder, tfds_data_dir, photos), str(workdir))
  assert str(raised.value).startswith(f'{photos / "broken.jpg"}: cannot read the image')
  assert not out.exists()


def test_skip_corrupt_predicts_the_rest(workdir, photos, sample_folder, tfds_data_dir, capsys):
  (photos / 'broken.jpg').write_bytes(b'junk')
  config = predict_config(sample_folder, tfds_data_dir, photos, skip_corrupt=True)
  rows = read_csv(predict.predict_workdir(config, str(workdir)))
  assert len(rows) == 6 and str(photos / 'broken.jpg') not in [r['path'] for r in rows]
  assert f'skipped 1 unreadable: {photos / "broken.jpg"}' in capsys.readouterr().out


def test_many_images_in_batches_of_the_eval_batch_size(workdir, sample_folder, tfds_data_dir,
                                                       test_split):
  # 12 test images with a batch of 8: two batches, the last padded.
  by_name, _ = test_split
  folder = pathlib.Path(sample_folder) / 'test' / 'images'
  config = predict_config(sample_folder, tfds_data_dir, folder, eval_batch_size=8)
  rows = read_csv(predict.predict_workdir(config, str(workdir)))
  assert [pathlib.Path(r['path']).name for r in rows] == list(by_name)
  for row in rows:
    assert float(row['probability']) == pytest.approx(
        by_name[pathlib.Path(row['path']).name].max(), abs=2e-6)


@pytest.mark.slow
def test_main_predicts_own_images(workdir, photos):
  result = subprocess.run(
      [sys.executable, str(REPO / 'main.py'), '--mode=predict',
       f'--config={REPO / "configs/default.py"}', f'--workdir={workdir}',
       f'--config.predict_images={photos}/*.JPEG'],
      cwd=photos, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = read_csv(workdir / 'image_predictions.csv')
  assert [r['path'] for r in rows] == [f'{photos}/test_{i}.JPEG' for i in range(4)]
  assert f'4 predictions (tta none) -> {workdir / "image_predictions.csv"}' in result.stdout
