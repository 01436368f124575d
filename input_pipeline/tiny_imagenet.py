"""TFDS builder `tiny_imagenet`: prepares Tiny ImageNet from the official files as they are.

The source is the extracted `tiny-imagenet-200` folder or the official zip (read in place,
nothing is extracted); with no source, the zip is downloaded and its MD5 checked. The val
folder is read through `val/val_annotations.txt`, so nothing has to be rearranged by hand.

Features:
  image: (64, 64, 3) uint8. Grayscale JPEGs decode to 3 equal channels, CMYK and other
    modes are converted to RGB, other sizes are resized to 64x64.
  label: `ClassLabel` over the wnids in sorted order (the order of the original project's
    predictions); the test split is unlabelled and holds -1, which `ClassLabel` accepts as
    "no label".
  file_name: the image's file name, e.g. `val_17.JPEG`.

The number of classes comes from `wnids.txt`, so each source gets its own `BuilderConfig`,
named from a fingerprint of the source (resolved path, size and modification time):
two sources never share prepared files in one `data_dir`. Human-readable class names (from
`words.txt`) are in `info.metadata['class_names']`.
"""

import collections
from collections.abc import Callable, Iterator
import concurrent.futures
import dataclasses
import errno
import hashlib
import io
import logging
import os
import pathlib
import re
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
import zlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from input_pipeline import image_files
from input_pipeline.image_files import DataError

URL = 'https://cs231n.stanford.edu/tiny-imagenet-200.zip'
MD5 = '90528d7ca1a48142e341f4ef8d21d0de'
# The official zip's exact size: the download stops at one byte more.
ZIP_BYTES = 248_100_043
IMAGE_SIZE = 64
OFFICIAL_CONFIG = 'official'
SPLITS = ('train', 'validation', 'test')
# Images of this shape and mode are stored as they are; the others are re-encoded (PNG).
KEPT_MODES = ('RGB', 'L')
# A JPEG starts with the start-of-image marker and ends with the end-of-image marker.
JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
# A 64x64 JPEG at quality 100 takes under 20 KB; a bigger one carries something else after
# its image (which would be stored as it is), so it is decoded and stored as pixels instead.
KEPT_JPEG_MAX_BYTES = 48 << 10
# Threads that read and check the image files while preparing, and how far they read ahead:
# at most AHEAD files and AHEAD_BYTES of them (by their declared sizes) wait for the writer.
# No more threads than cores: TFDS serialises each example in the calling thread, under the
# same GIL, and extra readers only take turns with it (docs/performance.md).
READ_THREADS = min(4, os.cpu_count() or 1)
AHEAD = 256
AHEAD_BYTES = 64 << 20


def natural_key(name: str) -> list:
  """Sort key that orders `val_2` before `val_10`."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def plain_name(name: str, where: str, what: str) -> str:
  """`name` if it names a file or folder inside its folder: no '/', '\\', '..' or '.'.

  Names come from text files and listings of the source (annotations, wnids, zip members),
  so a crafted one could otherwise point anywhere on the machine, or break a message's line
  (control characters).
  """
  if (not name or name in ('.', '..') or '/' in name or '\\' in name
      or any(ord(c) < 32 or ord(c) == 127 for c in name)):
    raise DataError(f'{where}: {what} {name!r} is not a plain file name; expected a name '
                    'without "/", "\\" or "..", inside its folder.')
  return name


class Source:
  """Read access to a `tiny-imagenet-200` folder or to the official zip, by relative path."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path).expanduser().resolve()
    if zipfile.is_zipfile(self.path):
      self._zip = zipfile.ZipFile(self.path)
      # ZipFile counts its open members without a lock: threads take turns reading.
      self._zip_lock = threading.Lock()
      self._names = set(self._zip.namelist())
      roots = [n[:-len('wnids.txt')] for n in self._names if n.endswith('wnids.txt')]
      self._prefix = min(roots, key=len) if roots else ''
    elif self.path.is_dir():
      self._zip = None
      self._folders = {}  # Resolved and checked folders (`_read_file`), by relative path.
      nested = self.path / 'tiny-imagenet-200'
      if not (self.path / 'wnids.txt').exists() and (nested / 'wnids.txt').exists():
        self.path = nested  # The folder the zip was extracted into.
    elif self.path.is_file():
      raise DataError(f'{self.path}: not a readable zip file ({self.path.stat().st_size:,} '
                      'bytes: truncated or damaged?); download tiny-imagenet-200.zip again or '
                      'use the extracted folder.')
    else:
      raise DataError(f'data_source={str(path)!r} is neither a folder nor a zip file; '
                      'expected the extracted tiny-imagenet-200 folder or its zip.')

  def describe(self, relative: str) -> str:
    """A path for messages: `folder/relative` or `file.zip:prefix/relative`."""
    if self._zip:
      return f'{self.path}:{self._prefix}{relative}'
    return str(self.path / relative)

  def _inside(self, relative: str) -> pathlib.Path:
    """The file of a folder source, refused if it (or a link on its way) leads outside."""
    path = self.path / relative
    try:
      resolved = path.resolve(strict=True)
    except FileNotFoundError:
      raise DataError(f'{self.describe(relative)}: file not found.') from None
    except OSError as error:
      raise DataError(f'{self.describe(relative)}: cannot be read ({error.strerror}).') from None
    if not resolved.is_relative_to(self.path):
      raise DataError(f'{self.describe(relative)}: leads outside the source (to {resolved}); '
                      f'every file must lie inside {self.path}.')
    return resolved

  def _read_file(self, relative: str, where: str) -> bytes:
    """A folder source's file. Its folder is checked once (`_inside`, cached); the file is
    opened without following a link, and only a link that stays inside is then read."""
    parent, _, name = relative.rpartition('/')
    folder = self._folders.get(parent)
    if folder is None:
      folder = self._folders[parent] = self._inside(parent) if parent else self.path
    try:
      return image_files.read_limited(folder / name, where, follow_links=False)
    except OSError as error:
      if error.errno != errno.ELOOP:
        raise
    return image_files.read_limited(self._inside(relative), where)

  def size(self, relative: str) -> int:
    """The file's size in bytes as the source declares it (0 when unknown), read cheaply."""
    try:
      if self._zip:
        return self._zip.getinfo(self._prefix + relative).file_size
      return (self.path / relative).stat().st_size
    except (KeyError, OSError):
      return 0

  def exists(self, relative: str) -> bool:
    if self._zip:
      full = self._prefix + relative
      return full in self._names or any(n.startswith(full + '/') for n in self._names)
    return (self.path / relative).exists()

  def list_dir(self, relative: str) -> list[str]:
    """Names of the files directly inside a folder, in natural order."""
    if self._zip:
      prefix = f'{self._prefix}{relative}/'
      names = {n[len(prefix):].split('/')[0] for n in self._names if n.startswith(prefix)}
      names.discard('')
    else:
      try:
        names = os.listdir(self._inside(relative))
      except OSError as e:
        raise DataError(f'{self.describe(relative)}: cannot list the folder '
                        f'({e.strerror}).') from None
    where = self.describe(relative)
    return sorted((plain_name(n, where, 'entry') for n in names), key=natural_key)

  def read_bytes(self, relative: str) -> bytes:
    """A file's bytes, at most `image_files.MAX_IMAGE_BYTES` of them.

    Raises:
      DataError: a missing, unreadable, oversized or outside file, a zip bomb, a damaged zip.
    """
    where = self.describe(relative)
    try:
      if self._zip:
        info = self._zip.getinfo(self._prefix + relative)
        image_files.check_zip_member(info, where)
        with self._zip_lock:
          return self._zip.read(info)
      return self._read_file(relative, where)
    except KeyError:
      raise DataError(f'{where}: file not found.') from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
      raise DataError(f'{where}: cannot be read from the zip ({e}); the zip is damaged: '
                      'download it again.') from None
    except FileNotFoundError:
      raise DataError(f'{where}: file not found.') from None
    except OSError as e:  # A folder where a file belongs, no permission, an I/O error.
      raise DataError(f'{where}: cannot be read ({e.strerror or e}).') from None

  def read_lines(self, relative: str, expected: str) -> list[str]:
    """Non-empty lines of a text file; a missing file is a DataError saying what it holds."""
    if not self.exists(relative):
      raise DataError(f'{self.describe(relative)} not found; expected {expected}.')
    try:
      text = self.read_bytes(relative).decode('utf-8')
    except UnicodeDecodeError as e:
      raise DataError(f'{self.describe(relative)}: not UTF-8 text (byte {e.start}); expected '
                      f'{expected}.') from None
    return [l for l in text.splitlines() if l.strip()]

  def fingerprint(self) -> str:
    """Changes with the resolved path, size and modification time of the source."""
    paths = [self.path]
    if not self._zip:
      paths += [self.path / 'wnids.txt', self.path / 'val' / 'val_annotations.txt']
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.exists()]
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:12]


def read_wnids(source: Source) -> list[str]:
  """The wnids of `wnids.txt`, sorted: the class index order."""
  wnids = [plain_name(l.strip(), source.describe('wnids.txt'), 'wnid') for l in source.read_lines(
      'wnids.txt', 'one wnid (e.g. n01443537) a line, the Tiny ImageNet class list')]
  if len(set(wnids)) != len(wnids):
    raise DataError(f'{source.describe("wnids.txt")}: repeated wnids; expected each once.')
  return sorted(wnids)


def read_class_names(source: Source, wnids: list[str]) -> list[str]:
  """Human-readable names of the wnids from `words.txt` (the wnid itself when absent)."""
  words = {}
  if source.exists('words.txt'):
    for line in source.read_lines('words.txt', 'wnid<TAB>names lines'):
      wnid, _, names = line.partition('\t')
      words[wnid.strip()] = names.strip()
  return [words.get(w, w) for w in wnids]


def split_files(source: Source, split: str, wnids: list[str]) -> list[tuple[str, str, int]]:
  """(relative path, file name, label) of every image of a split, in natural order.

  Args:
    source: the dataset files.
    split: 'train', 'validation' or 'test'.
    wnids: sorted wnids; a label is an index into them (-1 for the test split).

  Returns:
    One tuple per image.

  Raises:
    DataError: a missing split folder or annotation file, or an unknown wnid.
  """
  folder = {'train': 'train', 'validation': 'val', 'test': 'test'}[split]
  if not source.exists(folder):
    raise DataError(f'{source.describe(folder)}: split folder not found; expected the '
                    f'{split} images under {folder}/ as in the official tiny-imagenet-200.')
  if split == 'train':
    files = []
    for label, wnid in enumerate(wnids):
      images = f'train/{wnid}/images'
      if not source.exists(images):
        raise DataError(f'{source.describe(images)}: folder not found; expected the train '
                        f'images of {wnid}, listed in wnids.txt.')
      names = source.list_dir(images)
      if not names:
        raise DataError(f'{source.describe(images)}: no images; expected the train images of '
                        f'{wnid}, listed in wnids.txt (remove it there or add its images).')
      files += [(f'{images}/{n}', n, label) for n in names]
    return files
  if split == 'test':
    return [(f'test/images/{n}', n, -1) for n in source.list_dir('test/images')]
  return validation_files(source, wnids)


def validation_files(source: Source, wnids: list[str]) -> list[tuple[str, str, int]]:
  """Validation images and their labels, from `val/val_annotations.txt`."""
  annotations = 'val/val_annotations.txt'
  lines = source.read_lines(annotations, 'tab-separated lines "file, wnid, x0, y0, x1, y1" '
                            'labelling val/images')
  labels = {w: i for i, w in enumerate(wnids)}
  files = []
  for number, line in enumerate(lines, start=1):
    fields = line.split('\t')
    if len(fields) < 2:
      raise DataError(f'{source.describe(annotations)}:{number}: {line!r}; expected '
                      '"file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1".')
    name = plain_name(fields[0].strip(), f'{source.describe(annotations)}:{number}', 'file')
    wnid = fields[1].strip()
    if wnid not in labels:
      raise DataError(f'{source.describe(annotations)}:{number}: wnid {wnid} of {name} is '
                      f'not in wnids.txt; expected one of its {len(wnids)} wnids.')
    files.append((f'val/images/{name}', name, labels[wnid]))
  return sorted(files, key=lambda f: natural_key(f[1]))


def decode_image(data: bytes, name: str) -> bytes | np.ndarray:
  """Checks that an image decodes and returns what the `Image` feature should store.

  64x64 RGB or grayscale JPEGs are kept as they are (the TFDS decoder asks for 3 channels,
  so grayscale comes out as 3 equal channels); anything else is decoded here, converted to
  RGB, resized to 64x64 and handed over as pixels. A complete JPEG that is kept is checked
  from its header alone (see `is_kept_jpeg`): decoding it here would only be thrown away.

  Args:
    data: the file's bytes.
    name: the file, for messages.

  Returns:
    The original bytes, or a (64, 64, 3) uint8 array.

  Raises:
    DataError: an empty, truncated or otherwise unreadable image.
  """
  if not data:
    raise DataError(f'{name}: empty file; expected a {IMAGE_SIZE}x{IMAGE_SIZE} JPEG image.')
  if len(data) <= KEPT_JPEG_MAX_BYTES and is_kept_jpeg(data):
    return data
  return fully_decoded_image(data, name)


def is_kept_jpeg(data: bytes, size: int = IMAGE_SIZE) -> bool:
  """Whether the bytes are a complete `size`x`size` RGB or grayscale JPEG, read without decoding.

  The header (PIL's lazy `Image.open`) gives the mode and size; the start-of-image marker
  first and the end-of-image marker last show the file is complete (a truncated file lacks
  the end marker: inside the compressed data a 0xFF byte is always followed by 0x00 or a
  restart marker, never by 0xD9). Anything else, or any doubt, returns False and the image
  is decoded in full by `fully_decoded_image`, which also words the errors.
  """
  if not (data.startswith(JPEG_START) and data.endswith(JPEG_END)):
    return False
  try:
    with Image.open(io.BytesIO(data), formats=('JPEG',)) as image:
      return image.mode in KEPT_MODES and image.size == (size, size)
  except Exception:  # pylint: disable=broad-except  # Any doubt: the full decode words it.
    return False


def fully_decoded_image(data: bytes, name: str, size: int = IMAGE_SIZE,
                        **words: str) -> bytes | np.ndarray:
  """`decode_image` by a full PIL decode: the original bytes or (size, size, 3) uint8 pixels.

  A complete `size`x`size` RGB or grayscale JPEG of at most `KEPT_JPEG_MAX_BYTES` keeps its
  bytes; anything else is converted to RGB and, if need be, resized (bilinear). `words`
  (`failure`, `expected`) word a decoding error (`image_files.open_image`).
  """
  words.setdefault('expected', f'a complete {size}x{size} JPEG image')
  with image_files.open_image(data, name, **words) as image:
    if (image.format == 'JPEG' and image.mode in KEPT_MODES
        and image.size == (size, size) and len(data) <= KEPT_JPEG_MAX_BYTES):
      return data
    rgb = image.convert('RGB')
  if rgb.size != (size, size):
    rgb = rgb.resize((size, size), Image.BILINEAR)
  return np.asarray(rgb, dtype=np.uint8)


def checked_images(source: Source, files: list[tuple[str, str, int]], *,
                   threads: int = READ_THREADS,
                   decode: Callable[[bytes, str], bytes | np.ndarray] = decode_image
                   ) -> Iterator[bytes | np.ndarray | DataError]:
  """`decode` (`decode_image`) of each file, in the order of `files`, read by a pool of threads.

  Reading a file and decoding an image release the GIL, so the threads overlap them with
  each other and with TFDS's serialisation in the calling thread. At most `AHEAD` images,
  and `AHEAD_BYTES` of them by their declared sizes, are held ahead of the caller.

  Args:
    source: the dataset files.
    files: (relative path, file name, label) tuples, as from `split_files`.
    threads: worker threads.
    decode: checks a file's bytes (named for messages) and returns what to store.

  Yields:
    What `decode_image` returns for each file, or the DataError it raised (the caller
    decides whether to skip it).
  """

  def check(relative: str) -> bytes | np.ndarray | DataError:
    try:
      return decode(source.read_bytes(relative), source.describe(relative))
    except DataError as error:
      return error

  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending, pending_bytes = collections.deque(), 0
    for relative, _, _ in files:
      size = min(source.size(relative), image_files.MAX_IMAGE_BYTES)
      while pending and (len(pending) >= AHEAD or pending_bytes + size > AHEAD_BYTES):
        future, done_size = pending.popleft()
        pending_bytes -= done_size
        yield future.result()
      pending.append((pool.submit(check, relative), size))
      pending_bytes += size
    while pending:
      yield pending.popleft()[0].result()


@dataclasses.dataclass(eq=False)
class TinyImagenetConfig(tfds.core.BuilderConfig):
  """One prepared copy per source; the classes are read from that source."""
  source: str = ''
  wnids: tuple[str, ...] = ()
  class_names: tuple[str, ...] = ()
  skip_corrupt: bool = False

  def __repr__(self) -> str:  # TFDS logs the config: keep it short of the 200 wnids.
    return (f'TinyImagenetConfig(name={self.name!r}, source={self.source!r}, '
            f'classes={len(self.wnids)}, skip_corrupt={self.skip_corrupt})')


def download_official(download_dir: str | os.PathLike) -> pathlib.Path:
  """Downloads the official zip once over HTTPS, checking its size and MD5.

  At most `ZIP_BYTES` + 1 bytes are read, into a temporary file beside the target that is
  removed on any failure, Ctrl-C included; the zip appears under its name only when whole.

  Args:
    download_dir: folder that keeps the zip.

  Returns:
    The path of `tiny-imagenet-200.zip`.

  Raises:
    DataError: offline, or the download does not have the official size and MD5.
  """
  path = pathlib.Path(download_dir) / 'tiny-imagenet-200.zip'
  if path.exists() and file_md5(path) == MD5:
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  logging.info('Downloading %s to %s.', URL, path)
  with tempfile.NamedTemporaryFile(dir=path.parent, prefix='.tiny-imagenet-200.',
                                   suffix='.part', delete=False) as partial:
    try:
      copied = fetch(URL, partial, ZIP_BYTES + 1)
      partial.close()
      if copied != ZIP_BYTES or (md5 := file_md5(partial.name)) != MD5:
        got = f'{copied:,} bytes' if copied != ZIP_BYTES else f'MD5 {md5}'
        raise DataError(f'{URL}: the download has {got}; expected {ZIP_BYTES:,} bytes with '
                        f'MD5 {MD5}. Download it again, or set config.data_source to a copy '
                        'you trust.')
      os.replace(partial.name, path)
    except BaseException:
      pathlib.Path(partial.name).unlink(missing_ok=True)
      raise
  return path


def fetch(url: str, out, limit: int) -> int:
  """Copies at most `limit` bytes of `url` into the file `out`; returns how many."""
  try:
    with urllib.request.urlopen(url, timeout=30) as response:
      copied = 0
      while copied < limit and (block := response.read(min(1 << 20, limit - copied))):
        out.write(block)
        copied += len(block)
      return copied
  except (urllib.error.URLError, OSError) as e:
    raise DataError(f'cannot download {url} ({e}); download tiny-imagenet-200.zip yourself '
                    'and set config.data_source to its path (or to the extracted folder), or '
                    'run offline on the generated sample: python main.py '
                    '--config=configs/smoke.py (or add --config.sample.enabled=True).'
                    ) from None


def file_md5(path: str | os.PathLike) -> str:
  digest = hashlib.md5()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def builder_config(source: str | os.PathLike, *, skip_corrupt: bool = False,
                   name: str | None = None) -> TinyImagenetConfig:
  """The builder config of a source: its classes, and a name unique to the source.

  Args:
    source: the extracted `tiny-imagenet-200` folder or the official zip.
    skip_corrupt: skip unreadable images instead of failing.
    name: config name; by default derived from the source's fingerprint.

  Returns:
    The config to pass to `TinyImagenet(config=...)`.
  """
  files = Source(source)
  wnids = read_wnids(files)
  return TinyImagenetConfig(
      name=name or f'source_{files.fingerprint()}',
      description=f'Prepared from {files.path} ({len(wnids)} classes).',
      source=str(files.path), wnids=tuple(wnids),
      class_names=tuple(read_class_names(files, wnids)), skip_corrupt=skip_corrupt)


def make_builder(source: str | os.PathLike = '', *, data_dir: str | None = None,
                 skip_corrupt: bool = False) -> 'TinyImagenet':
  """The `tiny_imagenet` builder for a source ('' downloads the official zip).

  Args:
    source: the extracted `tiny-imagenet-200` folder or its zip; '' to download it.
    data_dir: TFDS data dir; None for the TFDS default.
    skip_corrupt: skip unreadable images while preparing, and log how many.

  Returns:
    The builder; call `download_and_prepare()` before reading.
  """
  data_dir = data_dir or tfds.core.constants.get_default_data_dir()
  if not source:
    zip_path = download_official(pathlib.Path(data_dir) / 'downloads' / 'tiny_imagenet')
    config = builder_config(zip_path, skip_corrupt=skip_corrupt, name=OFFICIAL_CONFIG)
  else:
    config = builder_config(source, skip_corrupt=skip_corrupt)
  return TinyImagenet(config=config, data_dir=data_dir)


def prepared_folder(source: str | os.PathLike, data_dir: str | os.PathLike) -> pathlib.Path:
  """Where `make_builder(source, data_dir=data_dir)` keeps the prepared files."""
  name = builder_config(source).name if source else OFFICIAL_CONFIG
  return pathlib.Path(data_dir) / TinyImagenet.name / name / str(TinyImagenet.VERSION)


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
  """Tiny ImageNet (200 classes, 64x64), from the official folder or zip."""

  name = 'tiny_imagenet'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Reads the official layout; val labels from annotations.'}
  # Configs are made per source by `builder_config`; there is no fixed list.
  BUILDER_CONFIGS = []
  # No registered checksums (the MD5 is checked on download). Setting this also keeps TFDS
  # from looking for a checksums file next to this module, a look-up that needs the
  # `importlib_resources` package, which tensorflow-datasets 4.9.10 uses but does not pin.
  url_infos = None
  HOMEPAGE = 'https://cs231n.stanford.edu/'

  # What `_info` describes; a builder of another layout (image folders) overrides these three.
  def stored_size(self) -> int:
    return IMAGE_SIZE

  def labels(self) -> tuple[str, ...]:
    return self.builder_config.wnids

  def class_names(self) -> tuple[str, ...]:
    return self.builder_config.class_names

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.stored_size()
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3)),
            'label': tfds.features.ClassLabel(names=self.labels()),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(class_names=list(self.class_names())),
        # Examples are written in file-name order, so evaluation and predictions keep it.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The source is local (downloaded by `make_builder` if needed).
    source = Source(self.builder_config.source)
    wnids = list(self.builder_config.wnids)
    return {split: self._generate_examples(source, split, split_files(source, split, wnids))
            for split in SPLITS}

  def decode(self, data: bytes, name: str) -> bytes | np.ndarray:
    """What the image feature stores for a file (a builder of other images decodes its way)."""
    return decode_image(data, name)

  def _generate_examples(self, source: Source, split: str, files):
    skipped = []
    for (_, name, label), image in zip(files, checked_images(source, files, decode=self.decode)):
      if isinstance(image, DataError):
        if not self.builder_config.skip_corrupt:
          raise image
        skipped.append(name)
        continue
      yield name, {'image': image, 'label': label, 'file_name': name}
    if skipped:
      logging.warning('skip_corrupt: skipped %d unreadable images of %d in split %s: %s',
                      len(skipped), len(files), split, ', '.join(skipped[:10]))
