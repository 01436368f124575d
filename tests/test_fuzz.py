"""Property-based fuzzing of every reader of outside files: only one-line DataErrors escape.

Hypothesis draws random and mutated inputs for the image reader, the zip and folder sources
of the Tiny ImageNet builder and their text files (wnids, annotations, words), a workdir's
`config.json` and PyTorch state_dict files. Whatever the input, a reader returns a result or
raises the project's own one-line error (`DataError`, `ConfigError`, the converter's
`ValueError`); nothing else escapes, and nothing is written outside the folder it reads.

The CI profile tries a few hundred inputs in about 30 s all told. For a long run:

  HYPOTHESIS_PROFILE=long python -m pytest -n 0 tests/test_fuzz.py

(about an hour: 100 times the inputs, and no per-example deadline).
"""

import io
import json
import os
import pathlib
import tempfile
import zipfile

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest

from input_pipeline import image_files
from input_pipeline import tiny_imagenet

settings.register_profile('ci', max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile('long', max_examples=6000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

DataError = image_files.DataError


def seed_images() -> list[bytes]:
  """Small valid images of each allowed format, to mutate."""
  pixels = np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)
  images = []
  for fmt in image_files.FORMATS:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    images.append(out.getvalue())
  return images


SEEDS = seed_images()


@st.composite
def mutated_images(draw) -> bytes:
  """A valid image with random bytes replaced, cut short, or spliced with random bytes."""
  data = bytearray(draw(st.sampled_from(SEEDS)))
  for _ in range(draw(st.integers(0, 8))):
    position = draw(st.integers(0, len(data) - 1))
    data[position] = draw(st.integers(0, 255))
  if draw(st.booleans()):
    data = data[:draw(st.integers(0, len(data)))]
  if draw(st.booleans()):
    data += draw(st.binary(max_size=64))
  return bytes(data)


image_bytes = st.one_of(st.binary(max_size=256), mutated_images())


def assert_one_line(error: DataError) -> None:
  assert str(error) and '\n' not in str(error)


@given(image_bytes)
def test_image_reader_returns_an_image_or_one_line_error(data):
  try:
    with image_files.open_image(data, 'x.img') as image:
      assert image.format in image_files.FORMATS
  except DataError as error:
    assert_one_line(error)


@given(image_bytes)
def test_dataset_decoder_returns_what_it_stores_or_one_line_error(data):
  try:
    stored = tiny_imagenet.decode_image(data, 'x.JPEG')
  except DataError as error:
    assert_one_line(error)
    return
  if isinstance(stored, bytes):
    assert stored == data and tiny_imagenet.is_kept_jpeg(data)
  else:
    assert stored.shape == (64, 64, 3) and stored.dtype == np.uint8


# --- The sources' text files and layout -------------------------------------------------------

text_lines = st.lists(st.text(st.characters(codec='utf-8', exclude_characters='\n\r'),
                              max_size=40), max_size=6)
names = st.one_of(st.sampled_from(['a.JPEG', '../x', '/etc/passwd', '', '..', 'a/b', 'n01']),
                  st.text(max_size=12))


@st.composite
def source_files(draw) -> dict[str, bytes]:
  """A Tiny ImageNet layout with random text files and random image names and bytes."""
  wnids = draw(st.lists(names, min_size=1, max_size=3))
  files = {'wnids.txt': draw(st.one_of(
      st.just('\n'.join(wnids).encode('utf-8', 'surrogatepass')), st.binary(max_size=40)))}
  annotations = [f'{draw(names)}\t{draw(st.sampled_from(wnids))}\t0\t0\t1\t1'
                 for _ in range(draw(st.integers(0, 3)))]
  files['val/val_annotations.txt'] = '\n'.join(
      annotations + draw(text_lines)).encode('utf-8', 'surrogatepass')
  files['words.txt'] = '\n'.join(draw(text_lines)).encode('utf-8', 'surrogatepass')
  for wnid in wnids:
    for _ in range(draw(st.integers(0, 2))):
      files[f'train/{wnid}/images/{draw(names)}'] = draw(image_bytes)
  for _ in range(draw(st.integers(0, 2))):
    files[f'val/images/{draw(names)}'] = draw(image_bytes)
  return files


def read_everything(source: tiny_imagenet.Source) -> None:
  """What preparation reads of a source: class lists, every split's files, every image."""
  wnids = tiny_imagenet.read_wnids(source)
  tiny_imagenet.read_class_names(source, wnids)
  for split in tiny_imagenet.SPLITS:
    files = tiny_imagenet.split_files(source, split, wnids)
    for relative, name, _ in files:
      assert '..' not in relative.split('/') and not relative.startswith('/'), relative
      assert '/' not in name
    for image in tiny_imagenet.checked_images(source, files, threads=1):
      if isinstance(image, DataError):
        assert_one_line(image)


def assert_reads_or_one_line_error(source_path: pathlib.Path) -> None:
  try:
    read_everything(tiny_imagenet.Source(source_path))
  except DataError as error:
    assert_one_line(error)


def listing(folder: pathlib.Path) -> list[str]:
  return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


@given(source_files())
@settings(max_examples=settings().max_examples // 2)
def test_zip_source_reads_or_one_line_error(files):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    archive = root / 'tiny-imagenet-200.zip'
    with zipfile.ZipFile(archive, 'w') as out:
      for name, data in files.items():
        try:
          out.writestr(f'tiny-imagenet-200/{name}', data)
        except (ValueError, UnicodeEncodeError):
          pass  # A name no zip can hold.
    before = listing(root)
    assert_reads_or_one_line_error(archive)
    assert listing(root) == before  # Nothing written.


@given(source_files(), st.booleans())
@settings(max_examples=settings().max_examples // 2)
def test_folder_source_reads_or_one_line_error(files, link_outside):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    source = root / 'tiny-imagenet-200'
    (root / 'outside.JPEG').write_bytes(SEEDS[0])
    for name, data in files.items():
      path = source / name
      try:
        if not path.resolve().is_relative_to(source.resolve()):
          continue  # The generator may name '..'; the files themselves stay in the folder.
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
      except (OSError, ValueError):
        continue  # A name the file system refuses (too long, NUL, a file where a folder is).
    if link_outside:
      images = sorted(source.rglob('*/images/*'))
      if images and images[0].is_file():
        images[0].unlink()
        images[0].symlink_to(root / 'outside.JPEG')
    before = listing(root)
    assert_reads_or_one_line_error(source)
    assert listing(root) == before


@pytest.mark.parametrize('member_size, compressed', [(2 << 20, True), (40 << 20, False)])
def test_zip_checks_refuse_before_inflating(tmp_path, member_size, compressed):
  """Not fuzzed: the two zip limits, each at a size just past it."""
  archive = tmp_path / 'x.zip'
  with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
                       ) as out:
    out.writestr('m', bytes(member_size))
  with zipfile.ZipFile(archive) as z:
    with pytest.raises(DataError, match='zip bomb' if compressed else 'declares'):
      image_files.check_zip_member(z.getinfo('m'), 'x.zip:m')


# --- config.json and state_dicts ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(['model', 'depth', 'width', 'dataset', 'data_source', 'cache',
                         'format_version', 'batch_size', 'pool_size', 'x']), children,
        max_size=4), max_leaves=12)


@st.composite
def config_files(draw) -> bytes:
  """A real config.json with fields replaced by random JSON, or random bytes."""
  from configs import default  # pylint: disable=g-import-not-at-top
  saved = default.get_config().to_dict()
  saved['model']['pool_size'] = list(saved['model']['pool_size'])
  for _ in range(draw(st.integers(0, 3))):
    section = draw(st.sampled_from([saved, saved['model'], saved['early_stopping']]))
    section[draw(st.sampled_from(sorted(section)))] = draw(json_values)
  if draw(st.booleans()):
    del saved[draw(st.sampled_from(sorted(saved)))]
  text = json.dumps(saved)
  return draw(st.one_of(st.just(text.encode()), st.binary(max_size=64),
                        st.just(text[:draw(st.integers(0, len(text)))].encode())))


@given(config_files())
def test_config_json_reader_returns_a_config_or_one_line_error(data):
  from vgg_flax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from vgg_flax.workdir import config as run_config  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    (pathlib.Path(tmp) / 'config.json').write_bytes(data)
    try:
      config = run_config.read_config(tmp)
    except ConfigError as error:
      assert str(error) and '\n' not in str(error)
      return
    assert config.model.depth in (11, 13, 16, 19) and config.model.width >= 1


tensors = st.builds(lambda shape: np.zeros(shape, np.float32),
                    st.lists(st.integers(0, 3), max_size=4))
state_values = st.one_of(tensors.map(lambda a: __import__('torch').from_numpy(a)),
                         st.integers(), st.text(max_size=4),
                         st.dictionaries(st.text(max_size=3), tensors.map(
                             lambda a: __import__('torch').from_numpy(a)), max_size=2),
                         st.lists(st.integers(), max_size=2))
state_names = st.one_of(st.sampled_from(['layers.0.conv.weight', 'features.0.weight',
                                         'fc_layers.4.bias', 'classifier.6.weight']),
                        st.text(max_size=20))


@given(st.dictionaries(state_names, state_values, max_size=5) | st.lists(tensors, max_size=2))
def test_state_dict_loader_converts_or_one_line_error(loaded):
  import torch  # pylint: disable=g-import-not-at-top
  from vgg_flax.core import models  # pylint: disable=g-import-not-at-top
  from vgg_flax.interop import torch_weights  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / 'weights.pt'
    torch.save(loaded, path)
    try:
      state = torch_weights.load_state_dict(str(path))
      torch_weights.from_torch_state_dict(state, models.VGG(depth=11, width=8, hidden_units=8,
                                                            num_classes=4))
    except ValueError as error:
      assert str(error) and '\n' not in str(error)
