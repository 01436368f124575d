"""Preparation checks most JPEGs from their header: what it stores must equal a full decode.

The reference below is the builder's contract written out with a full PIL decode of every
file: a complete 64x64 RGB or grayscale JPEG is stored as it is (so TensorFlow decodes the
file's own bytes, grayscale to 3 equal channels), anything else is converted to RGB and
resized bilinearly to 64x64, and a file PIL cannot decode is an error or skipped.
"""

import io
import logging
import pathlib
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import synthetic
from input_pipeline import tiny_imagenet
from input_pipeline.tiny_imagenet import DataError

SPLITS = ('train', 'validation', 'test')


def encode(image: Image.Image, fmt: str = 'JPEG', **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **options)
  return buffer.getvalue()


def photo(size=(64, 64), seed=0) -> Image.Image:
  """A smooth RGB image with noise, like a photo (JPEG keeps it close)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size[1], 0:size[0]] / 64
  pixels = np.stack([x, y, (x + y) / 2], -1) * 200 + rng.normal(0, 10, (size[1], size[0], 3))
  return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def odd_files() -> dict[str, bytes]:
  """One file of each kind preparation must tell apart, by what it is."""
  rgb = photo()
  return {
      'gray': encode(rgb.convert('L')),
      'progressive': encode(rgb, progressive=True),
      'cmyk': encode(rgb.convert('CMYK')),
      'odd_size': encode(photo((50, 40), seed=1)),
      'png_named_jpeg': encode(photo(seed=2), 'PNG'),
      'palette_png': encode(photo(seed=3).convert('P'), 'PNG'),
      'trailing_bytes': encode(photo(seed=4)) + b'\0' * 7,
      'truncated': encode(photo(seed=5))[:-300],
  }


def reference(data: bytes) -> np.ndarray | None:
  """What a prepared image must decode to, from a full PIL decode; None: unreadable."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.format == 'JPEG' and image.mode in ('RGB', 'L') and image.size == (64, 64):
        return tf.image.decode_image(data, channels=3).numpy()
      return np.asarray(image.convert('RGB').resize((64, 64), Image.BILINEAR))
  except OSError:
    return None


@pytest.fixture(scope='module')
def odd_folder(tmp_path_factory):
  """A generated sample whose first files of each split are replaced by `odd_files`."""
  folder = synthetic.write_sample(tmp_path_factory.mktemp('odd'), num_classes=2,
                                  train_per_class=10, val_per_class=4, test_images=8)
  wnid = (folder / 'wnids.txt').read_text().split()[0]
  files = odd_files()
  targets = {'truncated': folder / 'val' / 'images' / 'val_3.JPEG',
             'trailing_bytes': folder / 'test' / 'images' / 'test_7.JPEG'}
  train = [name for name in files if name not in targets]
  targets.update({name: folder / 'train' / wnid / 'images' / f'{wnid}_{i}.JPEG'
                  for i, name in enumerate(train)})
  for name, path in targets.items():
    path.write_bytes(files[name])
  return folder


def zipped(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
  """`folder` as the official zip holds it (members under tiny-imagenet-200/)."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
    for file in sorted(folder.rglob('*')):
      archive.write(file, f'tiny-imagenet-200/{file.relative_to(folder)}')
  return path


def expected_split(folder: pathlib.Path, split: str) -> list[tuple[str, int, np.ndarray]]:
  """(file name, label, image) of each readable file of a split, in natural name order."""
  wnids = sorted((folder / 'wnids.txt').read_text().split())
  in_order = lambda paths: sorted(paths, key=lambda p: tiny_imagenet.natural_key(p.name))
  if split == 'train':
    paths = [(p, i) for i, w in enumerate(wnids)
             for p in in_order((folder / 'train' / w / 'images').iterdir())]
  elif split == 'validation':
    lines = (folder / 'val' / 'val_annotations.txt').read_text().splitlines()
    labels = dict(l.split('\t')[:2] for l in lines)
    paths = [(p, wnids.index(labels[p.name]))
             for p in in_order(folder / 'val' / 'images' / n for n in labels)]
  else:
    paths = [(p, -1) for p in in_order((folder / 'test' / 'images').iterdir())]
  return [(p.name, label, image) for p, label in paths
          if (image := reference(p.read_bytes())) is not None]


@pytest.mark.parametrize('kind', ['folder', 'zip'])
def test_prepared_images_equal_a_full_decode(odd_folder, tmp_path, kind, monkeypatch, caplog):
  monkeypatch.setattr(tiny_imagenet, 'AHEAD', 3)  # Several rounds of reading ahead.
  source = odd_folder if kind == 'folder' else zipped(odd_folder, tmp_path / 'odd.zip')
  builder = tiny_imagenet.make_builder(source, data_dir=str(tmp_path / 'tfds'),
                                       skip_corrupt=True)
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  for split in SPLITS:
    expected = expected_split(odd_folder, split)
    stored = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
    assert [e['file_name'].decode() for e in stored] == [name for name, _, _ in expected]
    for example, (name, label, image) in zip(stored, expected):
      assert example['label'] == label, name
      np.testing.assert_array_equal(example['image'], image, err_msg=f'{split} {name}')
  assert 'skipped 1 unreadable images of 8 in split validation: val_3.JPEG' in caplog.text
  assert builder.info.splits['test'].num_examples == 8  # Trailing bytes: complete, kept.


def test_kept_jpegs_are_stored_byte_for_byte(odd_folder, tmp_path):
  builder = tiny_imagenet.make_builder(odd_folder, data_dir=str(tmp_path / 'tfds'),
                                       skip_corrupt=True)
  builder.download_and_prepare()
  stored = builder.as_dataset(split='train', shuffle_files=False,
                              decoders={'image': tfds.decode.SkipDecoding()})
  kept = 0
  for example in tfds.as_numpy(stored):
    name = example['file_name'].decode()
    path = odd_folder / 'train' / name.split('_')[0] / 'images' / name
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
      as_is = image.format == 'JPEG' and image.mode in ('RGB', 'L') and image.size == (64, 64)
    if as_is:
      kept += 1
      assert example['image'] == data, name
    else:
      assert example['image'].startswith(b'\x89PNG'), name  # Converted pixels, lossless.
  assert kept == 2 * 10 - 4  # All but CMYK, odd size and the two PNGs.


@pytest.mark.parametrize('name, kept', [
    ('gray', True), ('progressive', True), ('cmyk', False), ('odd_size', False),
    ('png_named_jpeg', False), ('palette_png', False), ('trailing_bytes', False),
    ('truncated', False)])
def test_only_complete_64px_rgb_or_gray_jpegs_skip_the_full_decode(name, kept):
  assert tiny_imagenet.is_kept_jpeg(odd_files()[name]) is kept


@pytest.mark.parametrize('cut', [2, 120, 700, -300, -3, -2, -1])
def test_a_jpeg_cut_anywhere_is_a_one_line_error_naming_it(cut):
  data = encode(photo())
  with pytest.raises(DataError, match=r'^train/x_1\.JPEG: cannot decode the image \(.*\); '
                                      r'expected a complete 64x64 JPEG image\.$') as error:
    tiny_imagenet.decode_image(data[:cut], 'train/x_1.JPEG')
  assert '\n' not in str(error.value)


def test_read_errors_keep_their_order_and_the_first_one_stops_preparing(odd_folder, tmp_path):
  source = tiny_imagenet.Source(odd_folder)
  files = tiny_imagenet.split_files(
      source, 'validation', sorted((odd_folder / 'wnids.txt').read_text().split()))
  files.insert(1, ('val/images/val_99.JPEG', 'val_99.JPEG', 0))
  results = list(tiny_imagenet.checked_images(source, files, threads=3))
  errors = [i for i, r in enumerate(results) if isinstance(r, DataError)]
  assert errors == [1, 4]  # The missing file, then val_3 (truncated), in place.
  assert 'val_99.JPEG: file not found' in str(results[1])
  assert all(isinstance(r, bytes) for r in results[:1] + results[2:4] + results[5:])
  with pytest.raises(DataError, match=r'val_3\.JPEG: cannot decode'):
    tiny_imagenet.make_builder(odd_folder, data_dir=str(tmp_path / 'tfds')).download_and_prepare()
  assert not list((tmp_path / 'tfds').glob('tiny_imagenet/*/1.0.0'))


def records(folder: pathlib.Path) -> dict[str, list[tf.train.Example]]:
  """The examples of each shard file of a prepared folder, parsed."""
  return {p.name: [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(str(p))
                   .as_numpy_iterator()] for p in sorted(folder.glob('*.tfrecord*'))}


def test_the_builder_writes_one_shard_a_split_in_file_name_order(odd_folder, tmp_path):
  """TFDS's own generator path writes the checked examples, in order, named as TFDS names."""
  builder = tiny_imagenet.make_builder(odd_folder, data_dir=str(tmp_path), skip_corrupt=True)
  builder.download_and_prepare()
  prepared = records(pathlib.Path(builder.data_dir))
  assert {s: i.shard_lengths for s, i in builder.info.splits.items()} == {
      'train': [20], 'validation': [7], 'test': [8]}
  assert sorted(prepared) == [
      f'tiny_imagenet-{s}.tfrecord-00000-of-00001' for s in ('test', 'train', 'validation')]
  names = [e.features.feature['file_name'].bytes_list.value[0].decode()
           for e in prepared['tiny_imagenet-validation.tfrecord-00000-of-00001']]
  assert names == sorted(names, key=tiny_imagenet.natural_key)
