"""TFDS builder `image_folder`: your own images, sorted into one folder per class.

The source is a folder, or a zip of it (read in place), laid out as torchvision's and TFDS's
`ImageFolder` read it:

  train/<class>/**/<image>     required; the classes are the sorted names of these folders
  val/<class>/**/<image>       optional; without it, a seeded, stratified `val_fraction` of
                               each class of train/ is held out as the validation split
  test/<class>/**/<image>      optional, labelled by folder,
  or test/**/<image>           or unlabelled (label -1)

A zip (or folder) holding one folder with `train/` in it is read through that folder. Files
and folders whose names start with '.' and `__MACOSX/` are ignored; any other file must be
an image.

Images: JPEG, PNG, BMP, GIF (first frame) and WebP, read through `image_files` as every
image from outside is (only these formats, within its size limits; a zip's members checked
before they are inflated). Every folder and file name must be a plain name
(`tiny_imagenet.plain_name`) and no link may lead out of the source, so nothing outside the
source is read and no name written into a workdir points outside it.

Each image is brought to `image_size` x `image_size` RGB exactly as `--mode=predict` brings
a user's own images (`vgg_flax.modes.own_images.load_image`), so training, evaluation and
`predict_images` see the same pixels: a JPEG already of that size in RGB or grayscale (of at
most `tiny_imagenet.KEPT_JPEG_MAX_BYTES`) is stored as it is (decoded later to 3 channels);
anything else is converted to RGB by PIL (grayscale repeated, palette looked up, alpha
dropped as torchvision's loader drops it) and resized with PIL's bilinear filter
(antialiased when shrinking), without keeping the aspect ratio: a 4:3 photo is squeezed to a
square, not cropped.

The builder shares the `tiny_imagenet` builder's machinery (`tiny_imagenet.Source` to read
folders and zips, the threaded checking, TFDS's generator path), so everything the
project does with Tiny ImageNet (caching, streaming, exact resume, evaluate, predict, the
ensemble, TensorBoard images, per-class figures) works on image folders unchanged. The class
names serve as both label names and words.

Each source, image size and hold-out gets its own `BuilderConfig`, named from a fingerprint
of them (for a folder: every file's path, size and modification time), so a changed folder
is prepared again and two sources never share prepared files.
"""

import dataclasses
import hashlib
import os
import pathlib
import zipfile
import zlib

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import image_files
from input_pipeline import tiny_imagenet
from input_pipeline.image_files import DataError

NAME = 'image_folder'
FORMATS = image_files.FORMATS
SPLIT_FOLDERS = {'train': 'train', 'validation': 'val', 'test': 'test'}
# The columns of `held_out_rows`, which training writes into the workdir (held_out.csv).
HELD_OUT_COLUMNS = ('path', 'class')
# Unlabelled test images (a flat test/ folder) carry this label, as Tiny ImageNet's test split.
NO_LABEL = -1


def is_ignored(name: str) -> bool:
  """Hidden files and folders (`.DS_Store`, `.git`) and macOS's `__MACOSX` zip folder."""
  return name.startswith('.') or name == '__MACOSX'


class FolderSource(tiny_imagenet.Source):
  """A folder of class folders, or its zip, read by paths relative to the folder with train/."""

  def __init__(self, path: str | os.PathLike):
    resolved = pathlib.Path(path).expanduser().resolve()
    if not resolved.is_dir() and not zipfile.is_zipfile(resolved):
      what = 'not a readable zip file' if resolved.is_file() else 'neither a folder nor a zip'
      raise DataError(f'data_source={str(path)!r} is {what}; expected a folder (or zip) '
                      'holding train/<class>/<images>.')
    super().__init__(resolved)
    if self._zip:
      self._prefix = self._zip_prefix()
    elif not (self.path / 'train').is_dir():
      inner = [p for p in self.path.iterdir()
               if p.is_dir() and not p.is_symlink() and not is_ignored(p.name)]
      if len(inner) == 1 and (inner[0] / 'train').is_dir():
        self.path = inner[0]  # The folder a zip was extracted into.

  def _zip_prefix(self) -> str:
    """The zip's folder that holds train/: '' (the top) or its one top folder 'name/'."""
    tops = set()
    for name in self._names:
      parts = name.split('/')
      if parts[0] == 'train' and len(parts) > 1:
        return ''
      if len(parts) > 2 and parts[1] == 'train' and not is_ignored(parts[0]):
        tops.add(f'{tiny_imagenet.plain_name(parts[0], str(self.path), "folder")}/')
    if len(tops) > 1:
      raise DataError(f'{self.path}: several folders hold a train/ ({", ".join(sorted(tops))}); '
                      'expected one (zip one dataset at a time).')
    return tops.pop() if tops else ''

  def entries(self, relative: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, file names) directly inside a folder, ignored names left out.

    Raises:
      DataError: a name that is not plain (`tiny_imagenet.plain_name`), a folder that leads
        outside the source (a link), or one that cannot be listed.
    """
    if self._zip:
      prefix = f'{self._prefix}{relative}/'
      folders, files = set(), set()
      for name in self._names:
        if name.startswith(prefix) and name != prefix:
          first, slash, _ = name[len(prefix):].partition('/')
          (folders if slash else files).add(first)
    else:
      folder = self._inside(relative)  # A link leading outside the source is refused.
      try:
        children = list(folder.iterdir())
      except OSError as e:
        raise DataError(f'{self.describe(relative)}: cannot list the folder '
                        f'({e.strerror or e}).') from None
      folders = {p.name for p in children if p.is_dir()}
      files = {p.name for p in children if not p.is_dir()}
    where = self.describe(relative)
    keep = lambda names: sorted(
        (tiny_imagenet.plain_name(n, where, 'entry') for n in names if not is_ignored(n)),
        key=tiny_imagenet.natural_key)
    return keep(folders), keep(files)

  def walk(self, relative: str, _seen: frozenset = frozenset()) -> list[str]:
    """Paths (relative to the source) of every file below a folder, in natural order.

    Raises:
      DataError: a link back to a folder it lies in (the walk would never end).
    """
    if not self._zip:
      real = self._inside(relative)
      if real in _seen:
        raise DataError(f'{self.describe(relative)}: links back to {real}, a folder it lies '
                        'in; remove the link.')
      _seen = _seen | {real}
    folders, files = self.entries(relative)
    found = [f'{relative}/{f}' for f in files]
    for folder in folders:
      found += self.walk(f'{relative}/{folder}', _seen)
    return found

  def fingerprint(self) -> str:
    """Changes with the zip (path, size, time), or with any file of the folder."""
    if self._zip:
      return super().fingerprint()
    stats = []
    for root, folders, files in os.walk(self.path):
      folders.sort()
      for name in sorted(files):
        path = os.path.join(root, name)
        try:
          stat = os.stat(path)
        except OSError:  # A broken link: read (and refused) when the split is prepared.
          stat = os.lstat(path)
        stats.append((os.path.relpath(path, self.path), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(repr((str(self.path), stats)).encode()).hexdigest()[:12]


# --- Which files, which classes, which split -----------------------------------------------


def read_classes(source: FolderSource) -> list[str]:
  """The class names: the sorted folder names of train/ (the label order)."""
  if not source.exists('train'):
    raise DataError(f'{source.describe("train")}: folder not found; expected '
                    'train/<class>/<images>, one folder per class.')
  classes, stray = source.entries('train')
  if stray:
    raise DataError(f'{source.describe("train/" + stray[0])}: a file outside the class '
                    'folders; expected train/<class>/<images> (move it into its class).')
  if not classes:
    raise DataError(f'{source.describe("train")}: no class folders; expected '
                    'train/<class>/<images>, one folder per class.')
  return classes


def labelled_files(source: FolderSource, folder: str,
                   classes: list[str]) -> list[tuple[str, str, int]]:
  """(path in the source, file name, label) of every image below `folder`/<class>/.

  The file name is the path below the split folder (`cat/img_1.jpg`): unique in the split,
  and what evaluation and prediction CSVs name.

  Raises:
    DataError: a class folder without files, or one that train/ does not have.
  """
  labels = {name: label for label, name in enumerate(classes)}
  found, stray = source.entries(folder)
  if stray:
    raise DataError(f'{source.describe(f"{folder}/{stray[0]}")}: a file outside the class '
                    f'folders; expected {folder}/<class>/<images>.')
  if not found:
    raise DataError(f'{source.describe(folder)}: no class folders; expected '
                    f'{folder}/<class>/<images>, with the class names of train/.')
  files = []
  for name in found:
    if name not in labels:
      raise DataError(f'{source.describe(f"{folder}/{name}")}: class {name!r} is not a folder '
                      f'of train/ (its classes: {", ".join(classes)}); rename or remove it.')
    paths = source.walk(f'{folder}/{name}')
    if not paths:
      raise DataError(f'{source.describe(f"{folder}/{name}")}: no images in class folder '
                      f'{name!r}; add its images or remove the folder.')
    files += [(p, p[len(folder) + 1:], labels[name]) for p in paths]
  return files


def test_files(source: FolderSource, classes: list[str]) -> list[tuple[str, str, int]]:
  """test/ as class folders (labelled) or as plain images (label `NO_LABEL`)."""
  folders, files = source.entries('test')
  if folders and files:
    raise DataError(f'{source.describe("test/" + files[0])}: test/ mixes files and folders; '
                    'expected either test/<class>/<images> or test/<images>.')
  if folders:
    return labelled_files(source, 'test', classes)
  return [(p, p[len('test/'):], NO_LABEL) for p in source.walk('test')]


def held_out_count(count: int, fraction: float) -> int:
  """Images of a class held out: the rounded share, but one at least and one left to train.

  A class of a single image keeps it for training.
  """
  if count < 2:
    return 0
  return min(max(round(count * fraction), 1), count - 1)


def hold_out(files: list[tuple[str, str, int]], classes: list[str], fraction: float,
             seed: int) -> tuple[list, list]:
  """Splits train/'s files into (train, validation), `fraction` of each class held out.

  Each class draws from its own generator, seeded by `seed` and the class name: the same
  seed holds out the same files, and adding a class changes no other class's choice.
  """
  by_class = [[] for _ in classes]
  for file in files:
    by_class[file[2]].append(file)
  train, validation = [], []
  for name, mine in zip(classes, by_class):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    chosen = set(rng.choice(len(mine), held_out_count(len(mine), fraction), replace=False))
    for index, file in enumerate(mine):
      (validation if index in chosen else train).append(file)
  return train, validation


def split_files(source: FolderSource, classes: list[str], val_fraction: float,
                split_seed: int) -> dict[str, list[tuple[str, str, int]]]:
  """(path, file name, label) of every image of each split, in class then natural order."""
  train = labelled_files(source, 'train', classes)
  if source.exists('val'):
    splits = {'train': train, 'validation': labelled_files(source, 'val', classes)}
  else:
    splits = dict(zip(('train', 'validation'),
                      hold_out(train, classes, val_fraction, split_seed)))
  if source.exists('test'):
    splits['test'] = test_files(source, classes)
  return splits


# --- Decoding ----------------------------------------------------------------------------


def decode_image(data: bytes, name: str, size: int) -> bytes | np.ndarray:
  """Checks that a file is an image and returns what the `Image` feature should store.

  Args:
    data: the file's bytes.
    name: the file, for messages.
    size: the side of the stored square images (`config.image_size`).

  Returns:
    The original bytes of a complete `size`x`size` RGB or grayscale JPEG, else the image
    as (size, size, 3) uint8 RGB pixels (see the module docstring).

  Raises:
    DataError: an empty, oversized or damaged file, or one of another format
      (`image_files.open_image`).
  """
  # The byte cap of `own_images.load_image` too: it decodes a JPEG with TF exactly when the
  # builder keeps its bytes, so both see the same pixels.
  if len(data) <= tiny_imagenet.KEPT_JPEG_MAX_BYTES and tiny_imagenet.is_kept_jpeg(data, size):
    return data
  return tiny_imagenet.fully_decoded_image(
      data, name, size, failure='not a readable image',
      expected=(f'an image ({", ".join(FORMATS)}): remove the file, or set skip_corrupt=True '
                'to skip such files'))


# --- The builder ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """One prepared copy per source, image size and hold-out.

  Attributes:
    source: the folder or zip.
    classes: the class folder names, sorted.
    image_size: side of the stored square images.
    val_fraction: share of each class of train/ held out when there is no val/.
    split_seed: seed of that hold-out.
    held_out: train/-relative paths of the held-out images ('' tuple when val/ exists).
    skip_corrupt: skip unreadable files (and count them) instead of failing.
  """
  source: str = ''
  classes: tuple[str, ...] = ()
  image_size: int = 64
  val_fraction: float = 0.1
  split_seed: int = 0
  held_out: tuple[str, ...] = ()
  skip_corrupt: bool = False

  def __repr__(self) -> str:  # TFDS logs the config: keep it short of the file lists.
    return (f'ImageFolderConfig(name={self.name!r}, source={self.source!r}, '
            f'classes={len(self.classes)}, image_size={self.image_size}, '
            f'held_out={len(self.held_out)}, skip_corrupt={self.skip_corrupt})')


def builder_config(source: str | os.PathLike, *, image_size: int, val_fraction: float = 0.1,
                   split_seed: int = 0, skip_corrupt: bool = False) -> ImageFolderConfig:
  """The builder config of a source: its classes, its hold-out and a name unique to them.

  Raises:
    DataError: no source, a layout that does not fit, or a bad `val_fraction`.
  """
  if not source:
    raise DataError("dataset='image_folder' needs config.data_source: a folder (or zip) "
                    'holding train/<class>/<images>.')
  if not 0 < val_fraction < 1:
    raise DataError(f'val_fraction={val_fraction} must be in (0, 1): the share of train/ '
                    'held out for validation when there is no val/.')
  files = FolderSource(source)
  classes = read_classes(files)
  held_out = ()
  if not files.exists('val'):
    _, validation = hold_out(labelled_files(files, 'train', classes), classes, val_fraction,
                             split_seed)
    held_out = tuple(name for _, name, _ in validation)
  key = repr((files.fingerprint(), image_size, held_out and (val_fraction, split_seed)))
  return ImageFolderConfig(
      name=f'source_{hashlib.sha256(key.encode()).hexdigest()[:12]}',
      description=f'Prepared from {files.path} ({len(classes)} classes, {image_size} px).',
      source=str(files.path), classes=tuple(classes), image_size=image_size,
      val_fraction=val_fraction, split_seed=split_seed, held_out=held_out,
      skip_corrupt=skip_corrupt)


def make_builder(source: str | os.PathLike, *, data_dir: str | None = None,
                 skip_corrupt: bool = False, image_size: int = 64, val_fraction: float = 0.1,
                 split_seed: int = 0) -> 'ImageFolder':
  """The `image_folder` builder of a source; call `download_and_prepare()` before reading."""
  config = builder_config(source, image_size=image_size, val_fraction=val_fraction,
                          split_seed=split_seed, skip_corrupt=skip_corrupt)
  return ImageFolder(config=config, data_dir=data_dir)


def prepared_folder(source: str | os.PathLike, data_dir: str | os.PathLike,
                    **options) -> pathlib.Path:
  """Where `make_builder(source, data_dir=data_dir, **options)` keeps the prepared files."""
  name = builder_config(source, **options).name
  return pathlib.Path(data_dir) / NAME / name / str(ImageFolder.VERSION)


def builder_options(config) -> dict:
  """`make_builder`'s options from a run's config."""
  return {'image_size': config.image_size, 'val_fraction': config.val_fraction,
          'split_seed': config.split_seed}


def held_out_rows(builder: tfds.core.DatasetBuilder) -> list[tuple[str, str]]:
  """(path below train/, class) of each held-out image; [] for other data or with val/."""
  config = builder.builder_config
  if not isinstance(config, ImageFolderConfig):
    return []
  return [(path, path.split('/')[0]) for path in config.held_out]


class ImageFolder(tiny_imagenet.TinyImagenet):
  """Images in class folders (train/, optionally val/ and test/), from a folder or a zip."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Class folders; hold-out of train/ when there is no val/.'}
  BUILDER_CONFIGS = []  # Made per source by `builder_config`.
  HOMEPAGE = None
  # Stored in class then file-name order (`_info`'s disable_shuffling): evaluation and
  # predictions keep it. The class names are the folder names.

  def stored_size(self) -> int:
    return self.builder_config.image_size

  def labels(self) -> tuple[str, ...]:
    return tuple(self.builder_config.classes)

  def class_names(self) -> tuple[str, ...]:
    return tuple(self.builder_config.classes)

  def decode(self, data: bytes, name: str) -> bytes | np.ndarray:
    return decode_image(data, name, self.builder_config.image_size)

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    config = self.builder_config
    source = FolderSource(config.source)
    splits = split_files(source, list(config.classes), config.val_fraction, config.split_seed)
    return {split: self._generate_examples(source, split, files)
            for split, files in splits.items()}
