"""Writes a generated image folder: train/<class>/, optionally val/<class>/ and a flat test/.

Two kinds of classes:

  shapes   each class one (shape, colour, texture) design of the Tiny ImageNet sample
           (`input_pipeline.synthetic`), each image at its own odd size (not square) and in
           one of several formats and modes (JPEG RGB and grayscale, PNG RGB, RGBA and
           palette, BMP, GIF, WebP): a folder of photos as the `image_folder` builder meets it.
  patches  a smooth background and one checked square whose place alone tells the class
           (`patch_box`): a model has to look at the square, so Grad-CAM's heat map can be
           checked against it.

  python -m input_pipeline.folder_sample --output=data/photos --num_classes=3
  python -m input_pipeline.folder_sample --output=data/patches --kind=patches --val_per_class=0

The same flags and seed write the same files.
"""

import io
import pathlib
import zipfile

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from input_pipeline import synthetic

KINDS = ('shapes', 'patches')
# (PIL format, mode, suffix), drawn with these weights: mostly JPEG, like photos.
FILE_TYPES = (('JPEG', 'RGB', '.jpg'), ('JPEG', 'L', '.jpeg'), ('PNG', 'RGB', '.png'),
              ('PNG', 'RGBA', '.png'), ('PNG', 'P', '.png'), ('BMP', 'RGB', '.bmp'),
              ('GIF', 'P', '.gif'), ('WEBP', 'RGB', '.webp'))
FILE_TYPE_WEIGHTS = (0.5, 0.05, 0.15, 0.08, 0.07, 0.05, 0.05, 0.05)
# Sides of the shapes images, drawn for each image and each axis.
MIN_SIDE, MAX_SIDE = 24, 160
# Patch classes: the patch's cell (row, column) on a 4x4 grid over the image.
PATCH_GRID = 4
PATCH_CELLS = {'top_left': (0, 0), 'bottom_right': (3, 3), 'top_right': (0, 3),
               'bottom_left': (3, 0), 'upper_middle': (1, 2), 'lower_middle': (2, 1)}
ZIP_DATE = synthetic.ZIP_DATE


def class_names(kind: str, num_classes: int, rng: np.random.Generator) -> list[str]:
  """Folder names of the classes (their designs for shapes, their places for patches)."""
  if kind == 'patches':
    if num_classes > len(PATCH_CELLS):
      raise ValueError(f'num_classes={num_classes}: patches has {len(PATCH_CELLS)} places.')
    return list(PATCH_CELLS)[:num_classes]
  return [f'{colour}_{texture}_{shape}' for shape, colour, texture in
          synthetic.class_designs(num_classes, rng)]


def patch_box(name: str, size: int) -> tuple[int, int, int, int]:
  """(top, left, bottom, right) pixels of a patch class's square in a `size` image."""
  row, column = PATCH_CELLS[name]
  cell = size // PATCH_GRID
  return row * cell, column * cell, (row + 1) * cell, (column + 1) * cell


def patch_pattern(name: str, side: int, step: int) -> np.ndarray:
  """The class's 0/1 pattern of a `side` square, in stripes or checks `step` px wide."""
  row, column = np.indices((side, side)) // step
  pattern = list(PATCH_CELLS).index(name)
  return [(row + column) % 2, row % 2, column % 2, (row + column) // 2 % 2,
          (row // 2 + column // 2) % 2, np.maximum(row, column) % 2][pattern]


def draw_patch_image(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
  """A smooth background of random colours with one checked square at the class's place.

  The square is the only detail in the image, so features that find it are active at its
  place (a plain square on noise would be found by the absence of noise, which Grad-CAM,
  a map of active evidence, does not show).
  """
  y, x = np.mgrid[0:size, 0:size] / size
  corners = rng.uniform(40, 215, (4, 3))
  image = (corners[0] * ((1 - y) * (1 - x))[..., None] + corners[1] * ((1 - y) * x)[..., None]
           + corners[2] * (y * (1 - x))[..., None] + corners[3] * (y * x)[..., None])
  image += rng.normal(0, 3, image.shape)
  top, left, bottom, right = patch_box(name, size)
  squares = patch_pattern(name, bottom - top, max(size // 32, 1))
  dark, light = rng.uniform(0, 80, 3), rng.uniform(175, 255, 3)
  image[top:bottom, left:right] = np.where(squares[..., None] == 1, light, dark)
  return np.clip(image, 0, 255).astype(np.uint8)


def draw_shape_image(name: str, rng: np.random.Generator) -> np.ndarray:
  """A shapes class's design at a random, rarely square size."""
  colour, texture, shape = name.split('_')
  pixels, _ = synthetic.draw_image((shape, colour, texture), MAX_SIDE, rng)
  width, height = rng.integers(MIN_SIDE, MAX_SIDE + 1, 2)
  return np.asarray(Image.fromarray(pixels).resize((int(width), int(height)), Image.BILINEAR))


def encode(pixels: np.ndarray, file_type: tuple[str, str, str]) -> bytes:
  """The file's bytes: the RGB pixels converted to the mode and saved in the format."""
  fmt, mode, _ = file_type
  image = Image.fromarray(pixels)
  if mode == 'RGBA':
    alpha = np.full(pixels.shape[:2], 255, np.uint8)
    alpha[:, :pixels.shape[1] // 8] = 0  # A transparent strip, dropped when read.
    image = Image.fromarray(np.dstack([pixels, alpha]), 'RGBA')
  elif mode != 'RGB':
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **({'quality': 90} if fmt in ('JPEG', 'WEBP') else {}))
  return buffer.getvalue()


class _Writer:
  """Writes files below a folder, or into `<folder>/images.zip` (as a user might zip it)."""

  def __init__(self, output_dir: pathlib.Path, zip_file: bool):
    self.root = output_dir
    self.zip = zipfile.ZipFile(output_dir / 'images.zip', 'w') if zip_file else None

  def write(self, relative: str, data: bytes) -> None:
    if self.zip:
      self.zip.writestr(zipfile.ZipInfo(relative, date_time=ZIP_DATE), data)
    else:
      path = self.root / relative
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(data)

  def close(self) -> pathlib.Path:
    if self.zip:
      self.zip.close()
      return pathlib.Path(self.zip.filename)
    return self.root


def write_folder(output_dir, *, kind: str = 'shapes', num_classes: int = 3,  # pylint: disable=redefined-builtin
                 train_per_class: int = 60, val_per_class: int = 15, test_images: int = 12,
                 image_size: int = 64, seed: int = 0, zip: bool = False) -> pathlib.Path:
  """Writes a generated image folder.

  Args:
    output_dir: folder to write into (created if needed).
    kind: 'shapes' or 'patches' (see the module docstring).
    num_classes: classes (patches: at most 6).
    train_per_class: images of each class in train/.
    val_per_class: images of each class in val/; 0 writes no val/ (the builder then holds
      out part of train/).
    test_images: unlabelled images in a flat test/; 0 writes no test/.
    image_size: side of the patches images (the shapes images draw their own sizes).
    seed: seed of the drawing.
    zip: write `images.zip` in `output_dir` instead of the folders.

  Returns:
    The folder that holds train/, or the zip.
  """
  if kind not in KINDS:
    raise ValueError(f'kind={kind!r} is not one of {", ".join(KINDS)}.')
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  names = class_names(kind, num_classes, rng)
  writer = _Writer(output_dir, zip)

  def write_image(relative_stem: str, name: str) -> None:
    if kind == 'patches':
      pixels, file_type = draw_patch_image(name, image_size, rng), FILE_TYPES[2]
    else:
      pixels = draw_shape_image(name, rng)
      file_type = FILE_TYPES[rng.choice(len(FILE_TYPES), p=FILE_TYPE_WEIGHTS)]
    writer.write(relative_stem + file_type[2], encode(pixels, file_type))

  for split, count in (('train', train_per_class), ('val', val_per_class)):
    for name in names:
      for i in range(count):
        write_image(f'{split}/{name}/{name}_{i}', name)
  for i in range(test_images):
    write_image(f'test/img_{i}', names[rng.integers(num_classes)])
  return writer.close()


_OUTPUT = flags.DEFINE_string('output', None, 'Folder to write train/, val/ and test/ into.')
_KIND = flags.DEFINE_enum('kind', 'shapes', KINDS, 'What tells the classes apart.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 3, 'Classes.')
_TRAIN = flags.DEFINE_integer('train_per_class', 60, 'Images of each class in train/.')
_VAL = flags.DEFINE_integer('val_per_class', 15, 'Images of each class in val/ (0: no val/).')
_TEST = flags.DEFINE_integer('test_images', 12, 'Unlabelled images in test/ (0: no test/).')
_SIZE = flags.DEFINE_integer('image_size', 64, 'Side of the patches images.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed; the same seed writes the same files.')
_ZIP = flags.DEFINE_bool('zip', False, 'Write <output>/images.zip instead of folders.')


def main(argv) -> None:
  del argv
  print(write_folder(_OUTPUT.value, kind=_KIND.value, num_classes=_NUM_CLASSES.value,
                     train_per_class=_TRAIN.value, val_per_class=_VAL.value,
                     test_images=_TEST.value, image_size=_SIZE.value, seed=_SEED.value,
                     zip=_ZIP.value))


if __name__ == '__main__':
  flags.mark_flag_as_required('output')
  app.run(main)
