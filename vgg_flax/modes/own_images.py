"""A user's own images for `--mode=predict --config.predict_images=PATH`.

PATH is a file, a folder (every image file under it, recursively) or a glob
(`photos/*.jpg`, `**` allowed). Images of the formats the project reads
(`input_pipeline.image_files.FORMATS`, within its size limits) are
brought to the dataset's stored image shape exactly as the TFDS builder prepares the
training images (`input_pipeline.tiny_imagenet.decode_image`): a JPEG already of that size in
RGB or grayscale is decoded by TensorFlow as the training pipeline decodes it; anything else
is converted by PIL (to RGB, or to grayscale for a grayscale dataset) and resized bilinearly.
The model then resizes to `image_size` on the device, as in training.
"""

from __future__ import annotations

import glob
import os
import pathlib

import numpy as np
from PIL import Image

from input_pipeline import image_files
from input_pipeline import pipeline
from input_pipeline import tiny_imagenet

with pipeline.lazy_tensorflow():  # Imported at first use, GPUs hidden.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

# What a folder is searched for (a file or a glob is taken as given): `image_files.FORMATS`.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
# Images the training pipeline stores as they are (see `tiny_imagenet.KEPT_MODES`).
KEPT_MODES = tiny_imagenet.KEPT_MODES


def find_images(spec: str) -> list[str]:
  """The image files a `predict_images` value names, in natural file-name order.

  Args:
    spec: a file, a folder (searched recursively for `IMAGE_SUFFIXES`) or a glob.

  Returns:
    The paths, each once.

  Raises:
    DataError: nothing matches.
  """
  path = pathlib.Path(spec).expanduser()
  if path.is_file():
    return [str(path)]
  if path.is_dir():
    files = [str(p) for p in path.rglob('*')
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    where = f'folder {spec} holds no image files ({", ".join(IMAGE_SUFFIXES)})'
  else:
    files = [f for f in glob.glob(os.path.expanduser(spec), recursive=True)
             if os.path.isfile(f)]
    where = f'predict_images={spec!r} matches no file'
  if not files:
    raise pipeline.DataError(f'{where}; give an image file, a folder of images or a glob '
                             'such as photos/*.jpg.')
  return sorted(set(files), key=tiny_imagenet.natural_key)


def load_image(path: str, shape: tuple[int, int, int]) -> np.ndarray:
  """One image as uint8 pixels of `shape` (height, width, channels), as training stores it.

  Raises:
    DataError: the file cannot be read or decoded; the message names it.
  """
  height, width, channels = shape
  try:
    data = image_files.read_limited(path, path)
  except OSError as error:
    raise pipeline.DataError(f'{path}: cannot read the image ({error.strerror}); set '
                             'skip_corrupt=True to skip it.') from None
  with image_files.open_image(
      data, path, failure='cannot read the image',
      expected=f'an image file ({", ".join(image_files.FORMATS)}), or set skip_corrupt=True '
      'to skip it') as image:
    if (image.format == 'JPEG' and image.mode in KEPT_MODES and image.size == (width, height)
        and len(data) <= tiny_imagenet.KEPT_JPEG_MAX_BYTES):
      # Stored as it is by the builder, then decoded by TF: the same pixels as training.
      return tf.image.decode_image(data, channels=channels, expand_animations=False).numpy()
    converted = image.convert('L' if channels == 1 else 'RGB')
  if converted.size != (width, height):
    converted = converted.resize((width, height), Image.BILINEAR)
  return np.asarray(converted, dtype=np.uint8).reshape(shape)


def load_images(paths: list[str], shape: tuple[int, int, int], *,
                skip_corrupt: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
  """Every image of `paths`, stacked.

  Args:
    paths: from `find_images`.
    shape: the dataset's stored image shape.
    skip_corrupt: skip unreadable files (and return them) instead of failing.

  Returns:
    (uint8 images (n, *shape), the paths read, the paths skipped).

  Raises:
    DataError: an unreadable file (without `skip_corrupt`), or none readable.
  """
  images, read, skipped = [], [], []
  for path in paths:
    try:
      images.append(load_image(path, shape))
      read.append(path)
    except pipeline.DataError:
      if not skip_corrupt:
        raise
      skipped.append(path)
  if not images:
    raise pipeline.DataError(f'none of the {len(paths)} files of predict_images could be '
                             f'read (skip_corrupt skipped all, e.g. {skipped[0]}).')
  return np.stack(images), read, skipped
