"""Input someone else made: damaged or crafted dataset files, through `main.py`.

Each case writes a small generated sample in the Tiny ImageNet layout, damages it the way a
downloaded archive or folder could be, and runs `main.py` on it in a subprocess: the run
ends with one line naming the file and exit status 2, nothing outside the sample is read,
and no decoder outside the project's formats runs.
"""

import io
import os
import pathlib
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from input_pipeline import image_files
from input_pipeline import synthetic
from input_pipeline import tiny_imagenet

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = dict(num_classes=2, train_per_class=4, val_per_class=2, test_images=2, seed=3)
# A minimal Encapsulated PostScript file: Pillow hands EPS to Ghostscript when it may.
EPS = (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n'
       b'newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n')


def crafted_dds() -> bytes:
  """A DDS header with a pixel format Pillow does not implement (it raises
  NotImplementedError, which no one catches as a decoding error)."""
  header = bytearray(124)
  struct.pack_into('<7I', header, 0, 124, 0x1007, 64, 64, 0, 0, 1)  # size, flags, h, w...
  struct.pack_into('<2I4s', header, 72, 32, 0x4, b'ZZZZ')  # pixel format: FourCC 'ZZZZ'
  return b'DDS ' + bytes(header) + bytes(64 * 64)


def photo_bytes(size=(64, 64), fmt='JPEG', mode='RGB') -> bytes:
  pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).convert(mode).save(out, format=fmt)
  return out.getvalue()


@pytest.fixture
def sample(tmp_path) -> pathlib.Path:
  return synthetic.write_sample(tmp_path / 'sample', **SAMPLE)


def first_train_image(sample: pathlib.Path) -> pathlib.Path:
  return sorted(sample.glob('train/*/images/*.JPEG'))[0]


def run_main(tmp_path, data_source, *extra, env_extra=None) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', **(env_extra or {}))
  args = [sys.executable, 'main.py', '--config=configs/default.py',
          f'--workdir={tmp_path / "run"}', f'--config.data_source={data_source}',
          f'--config.data_dir={tmp_path / "tfds"}', '--config.batch_size=4',
          '--config.eval_batch_size=4', '--config.image_size=32', '--config.model.width=8',
          '--config.model.hidden_units=16', '--config.num_epochs=1',
          '--config.progress_bar=False', *extra]
  return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *parts) -> str:
  output = result.stdout + result.stderr
  assert result.returncode == 2, output[-3000:]
  assert 'Traceback' not in output, output[-3000:]
  lines = [line for line in output.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, output[-3000:]
  for part in parts:
    assert part in lines[0], lines[0]
  return lines[0]


@pytest.mark.slow  # main.py in a subprocess.
def test_eps_named_jpeg_never_reaches_ghostscript(sample, tmp_path):
  # A `gs` first on PATH that leaves a mark if anything runs it.
  bin_dir, mark = tmp_path / 'bin', tmp_path / 'gs_ran'
  bin_dir.mkdir()
  (bin_dir / 'gs').write_text(f'#!/bin/sh\ntouch {mark}\nexit 1\n')
  (bin_dir / 'gs').chmod(0o755)
  image = first_train_image(sample)
  image.write_bytes(EPS)
  result = run_main(tmp_path, sample,
                    env_extra={'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'})
  assert_one_line_error(result, str(image), 'cannot decode the image',
                        'not JPEG, PNG, BMP, GIF, WEBP')
  assert not mark.exists()


@pytest.mark.slow  # main.py in a subprocess.
def test_crafted_dds_is_a_data_error_not_a_traceback(sample, tmp_path):
  image = first_train_image(sample)
  image.write_bytes(crafted_dds())
  assert_one_line_error(run_main(tmp_path, sample), str(image), 'cannot decode the image')


@pytest.mark.slow  # main.py in a subprocess.
def test_zip_member_that_inflates_to_200_mib_is_refused_unread(sample, tmp_path):
  archive = tmp_path / 'tiny-imagenet-200.zip'
  bomb = first_train_image(sample).relative_to(sample.parent).as_posix()
  with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED) as out:
    for path in sorted(sample.rglob('*')):
      name = path.relative_to(sample.parent).as_posix()
      if path.is_file() and name != bomb:
        out.write(path, name)
    with out.open(bomb, 'w') as member:  # 200 MiB of zeros: about 200 KB deflated.
      for _ in range(200):
        member.write(bytes(1 << 20))
  assert archive.stat().st_size < 1 << 20
  line = assert_one_line_error(run_main(tmp_path, archive), bomb, 'declares 209,715,200 bytes')
  assert 'at most 33,554,432' in line


def write_annotation(sample: pathlib.Path, index: int, name: str) -> pathlib.Path:
  """Replaces the file name of the `index`-th line of val_annotations.txt."""
  annotations = sample / 'val' / 'val_annotations.txt'
  lines = annotations.read_text().splitlines()
  fields = lines[index].split('\t')
  lines[index] = '\t'.join([name, *fields[1:]])
  annotations.write_text('\n'.join(lines) + '\n')
  return annotations


@pytest.mark.slow  # main.py in a subprocess.
def test_annotation_entries_cannot_leave_the_source(sample, tmp_path):
  annotations = write_annotation(sample, 0, '../../../../secret.jpg')
  assert_one_line_error(run_main(tmp_path, sample), f'{annotations}:1',
                        "file '../../../../secret.jpg' is not a plain file name")


@pytest.mark.parametrize('name', ['/etc/passwd', ' ', 'images/../../x.JPEG', '..', 'a\\b'])
def test_annotation_names_must_be_plain(sample, name):
  annotations = write_annotation(sample, 1, name)
  source = tiny_imagenet.Source(sample)
  with pytest.raises(tiny_imagenet.DataError, match=f'^{annotations}:2: file .* is not a plain '):
    tiny_imagenet.split_files(source, 'validation', tiny_imagenet.read_wnids(source))


def test_a_wnid_that_is_a_path_is_refused(sample):
  wnids = sample / 'wnids.txt'
  wnids.write_text(wnids.read_text() + '../../etc\n')
  with pytest.raises(tiny_imagenet.DataError,
                     match=f"^{wnids}: wnid '../../etc' is not a plain file name"):
    tiny_imagenet.read_wnids(tiny_imagenet.Source(sample))


@pytest.mark.slow  # main.py in a subprocess.
def test_symlinked_image_leading_outside_is_refused(sample, tmp_path):
  secret = tmp_path / 'secret.jpg'
  secret.write_bytes(photo_bytes())
  image = first_train_image(sample)
  image.unlink()
  image.symlink_to(secret)
  assert_one_line_error(run_main(tmp_path, sample), str(image), 'leads outside the source',
                        str(secret))


@pytest.mark.slow  # main.py in a subprocess.
def test_non_utf8_wnids_file(sample, tmp_path):
  wnids = sample / 'wnids.txt'
  wnids.write_bytes(wnids.read_bytes() + b'n0\xff\xfe1234\n')
  assert_one_line_error(run_main(tmp_path, sample), str(wnids), 'not UTF-8 text')


@pytest.mark.slow  # main.py in a subprocess.
def test_folder_where_an_image_belongs(sample, tmp_path):
  image = first_train_image(sample)
  image.unlink()
  image.mkdir()
  assert_one_line_error(run_main(tmp_path, sample), str(image), 'cannot be read',
                        'Is a directory')


# --- The reader itself, in process ----------------------------------------------------------


def test_jpeg_with_junk_after_its_end_is_stored_as_pixels_not_bytes():
  jpeg = photo_bytes()
  padded = jpeg[:-2] + bytes(1 << 20) + tiny_imagenet.JPEG_END  # Still ends with FFD9.
  assert tiny_imagenet.decode_image(jpeg, 'x.JPEG') == jpeg
  decoded = tiny_imagenet.decode_image(padded, 'x.JPEG')
  assert isinstance(decoded, np.ndarray) and decoded.shape == (64, 64, 3)


def test_skip_corrupt_counts_crafted_files_and_keeps_the_rest(sample, tmp_path):
  images = sorted(sample.glob('train/*/images/*.JPEG'))
  images[0].write_bytes(EPS)
  images[1].write_bytes(crafted_dds())
  builder = tiny_imagenet.make_builder(sample, data_dir=tmp_path / 'tfds', skip_corrupt=True)
  builder.download_and_prepare()
  assert builder.info.splits['train'].num_examples == len(images) - 2


@pytest.mark.parametrize('fmt', image_files.FORMATS)
def test_each_allowed_format_decodes(fmt):
  data = photo_bytes(size=(20, 12), fmt=fmt)
  with image_files.open_image(data, f'x.{fmt.lower()}') as image:
    assert image.format == fmt and image.size == (20, 12)


@pytest.mark.parametrize('fmt', ['TIFF', 'PPM', 'ICO', 'TGA'])
def test_other_formats_are_refused(fmt):
  with pytest.raises(image_files.DataError, match=r'^x: cannot decode the image \(not JPEG'):
    image_files.open_image(photo_bytes(size=(16, 16), fmt=fmt), 'x')


def test_too_many_pixels_is_refused_from_the_header():
  header_only = photo_bytes(size=(8, 8), fmt='PNG')
  # Rewrite the IHDR width and height (and its CRC) to 10000 x 10000.
  ihdr = b'IHDR' + struct.pack('>II', 10000, 10000) + header_only[24:29]
  import zlib  # pylint: disable=g-import-not-at-top
  crafted = (header_only[:12] + ihdr + struct.pack('>I', zlib.crc32(ihdr))
             + header_only[33:])
  with pytest.raises(image_files.DataError, match='10000x10000 pixels; at most 50,000,000'):
    image_files.open_image(crafted, 'x.png')


def test_oversized_file_is_refused_before_reading(tmp_path):
  path = tmp_path / 'big.jpg'
  with open(path, 'wb') as f:
    f.truncate(image_files.MAX_IMAGE_BYTES + 1)  # Sparse: no disk used.
  with pytest.raises(image_files.DataError, match='33,554,433 bytes; an image may have at most'):
    image_files.read_limited(path, str(path))
