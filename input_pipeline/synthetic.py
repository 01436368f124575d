"""Writes a small generated dataset in the exact Tiny ImageNet layout.

The sample is what the README's first command trains on and what the tests use, so it
mirrors the official `tiny-imagenet-200` files:

  wnids.txt                          one wnid a line (not in sorted order)
  words.txt                          wnid<TAB>names, with extra synsets like the real one
  train/<wnid>/images/<wnid>_<i>.JPEG and train/<wnid>/<wnid>_boxes.txt
  val/images/val_<i>.JPEG and val/val_annotations.txt (file, wnid, x0, y0, x1, y1)
  test/images/test_<i>.JPEG

Each class is a combination of a shape, a colour family and a texture; position, scale,
rotation, background and noise vary per image, so the classes are learnable but not
trivial. A few percent of the images are saved as grayscale JPEGs, like the real set.

  python -m input_pipeline.synthetic --output=/tmp/sample --num_classes=10
"""

import sys
import io
import itertools
import pathlib
import zipfile

from absl import flags
import numpy as np
from PIL import Image

FOLDER = 'tiny-imagenet-200'
SHAPES = ('disc', 'square', 'triangle', 'ring', 'cross')
# Hue of each colour family, in turns; saturation and value vary per image.
COLOURS = {'red': 0.0, 'orange': 0.08, 'yellow': 0.16, 'green': 0.33, 'cyan': 0.5,
           'blue': 0.62, 'purple': 0.75, 'pink': 0.9}
TEXTURES = ('plain', 'striped', 'checked', 'dotted', 'gradient')
GRAYSCALE_FRACTION = 0.03
JPEG_QUALITY = 90
# Fixed zip timestamps keep the zip byte-identical for a seed.
ZIP_DATE = (2015, 1, 1, 0, 0, 0)


def class_designs(num_classes: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
  """Draws distinct (shape, colour, texture) designs, one per class."""
  designs = list(itertools.product(SHAPES, COLOURS, TEXTURES))
  if num_classes > len(designs):
    raise ValueError(f'num_classes={num_classes}: the sample has at most {len(designs)} '
                     'distinct classes.')
  order = rng.permutation(len(designs))[:num_classes]
  return [designs[i] for i in order]


def draw_wnids(count: int, rng: np.random.Generator) -> list[str]:
  """Draws distinct wnids shaped like real ones (`n` + 8 digits), not in sorted order."""
  values = rng.choice(np.arange(1_000_000, 15_000_000), size=count, replace=False)
  wnids = [f'n{v:08d}' for v in values]
  if count > 1 and wnids == sorted(wnids):
    wnids.reverse()  # The reader must sort them itself.
  return wnids


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Vectorised HSV -> RGB in [0, 1]; arrays broadcast together."""
  k = np.stack([5.0, 3.0, 1.0])
  k = (k.reshape((3,) + (1,) * np.ndim(h)) + np.asarray(h) * 6) % 6
  return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Soft mask of a unit-size shape in the object's own coordinates (u, v)."""
  r = np.hypot(u, v)
  if shape == 'disc':
    d = r - 1
  elif shape == 'square':
    d = np.maximum(abs(u), abs(v)) - 0.85
  elif shape == 'triangle':
    d = np.maximum(np.maximum(-v - 0.6, 0.87 * u + 0.5 * v - 0.45), -0.87 * u + 0.5 * v - 0.45)
  elif shape == 'ring':
    d = abs(r - 0.75) - 0.28
  else:  # cross
    d = np.minimum(np.maximum(abs(u) - 0.3, abs(v) - 1), np.maximum(abs(u) - 1, abs(v) - 0.3))
  return np.clip(0.5 - d * 8, 0, 1)


def texture(name: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
  """Brightness pattern in [0, 1] over the object's coordinates."""
  if name == 'plain':
    return np.ones_like(u)
  if name == 'striped':
    return 0.5 + 0.5 * (np.sin(u * freq) > 0)
  if name == 'checked':
    return 0.5 + 0.5 * ((np.sin(u * freq) > 0) ^ (np.sin(v * freq) > 0))
  if name == 'dotted':
    return 1 - 0.6 * ((np.sin(u * freq) * np.sin(v * freq)) > 0.5)
  return np.clip(0.35 + 0.4 * (u + v), 0, 1)  # gradient


def draw_image(design: tuple[str, str, str], size: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
  """Draws one image of a class and its bounding box.

  Args:
    design: the class's (shape, colour family, texture).
    size: side of the square image in pixels.
    rng: source of the per-image jitter.

  Returns:
    A (size, size, 3) uint8 image and its box (x0, y0, x1, y1).
  """
  shape, colour, pattern = design
  scale = rng.uniform(0.18, 0.36)
  cx, cy = rng.uniform(0.3, 0.7, size=2)
  angle = rng.uniform(0, 2 * np.pi)
  y, x = np.mgrid[0:size, 0:size] / size
  dx, dy = (x - cx) / scale, (y - cy) / scale
  cos, sin = np.cos(angle), np.sin(angle)
  u, v = cos * dx + sin * dy, -sin * dx + cos * dy
  mask = shape_mask(shape, u, v)
  hue = COLOURS[colour] + rng.normal(0, 0.025)
  fg = hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))[:, None, None]
  fg = fg * texture(pattern, u, v, rng.uniform(5, 9))
  # A smooth background of another random hue, so colour alone does not give the class away.
  bg_hue = rng.uniform() + 0.3 * x
  bg = hsv_to_rgb(bg_hue, rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.9) * (0.7 + 0.3 * y))
  image = bg * (1 - mask) + fg * mask
  image = image.transpose(1, 2, 0) + rng.normal(0, 0.06, size=(size, size, 3))
  pixels = np.clip(image * 255, 0, 255).astype(np.uint8)
  half = scale * size
  box = (cx * size - half, cy * size - half, cx * size + half, cy * size + half)
  return pixels, tuple(int(np.clip(b, 0, size - 1)) for b in box)


def encode_jpeg(pixels: np.ndarray, grayscale: bool) -> bytes:
  """JPEG bytes of an RGB image, converted to one channel when `grayscale`."""
  image = Image.fromarray(pixels)
  if grayscale:
    image = image.convert('L')
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=JPEG_QUALITY)
  return buffer.getvalue()


def words_lines(wnids: list[str], designs: list, rng: np.random.Generator) -> list[str]:
  """words.txt lines for the classes plus as many unrelated synsets, sorted by wnid."""
  names = {w: f'{c} {t} {s}, {s}' for w, (s, c, t) in zip(wnids, designs)}
  for i, extra in enumerate(draw_wnids(2 * len(wnids) + 4, rng)):
    names.setdefault(extra, f'unused synset {i}')
  return [f'{w}\t{names[w]}' for w in sorted(names)]


class _Writer:
  """Writes files below `tiny-imagenet-200/`, into a folder or straight into a zip."""

  def __init__(self, output_dir: pathlib.Path, zip_path: pathlib.Path | None):
    self.root = output_dir / FOLDER
    self.zip = zipfile.ZipFile(zip_path, 'w') if zip_path else None

  def write(self, relative: str, data: bytes | str) -> None:
    if isinstance(data, str):
      data = data.encode()
    if self.zip:
      info = zipfile.ZipInfo(f'{FOLDER}/{relative}', date_time=ZIP_DATE)
      # JPEGs do not compress; the text files do.
      jpeg = relative.endswith('.JPEG')
      info.compress_type = zipfile.ZIP_STORED if jpeg else zipfile.ZIP_DEFLATED
      self.zip.writestr(info, data)
    else:
      path = self.root / relative
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(data)

  def close(self) -> None:
    if self.zip:
      self.zip.close()


def write_sample(output_dir, *, num_classes: int = 10, train_per_class: int = 100,  # pylint: disable=redefined-builtin
                 val_per_class: int = 20, test_images: int = 100, image_size: int = 64,
                 seed: int = 0, zip: bool = False) -> pathlib.Path:
  """Writes a generated sample in the Tiny ImageNet layout.

  Args:
    output_dir: folder to write into (created if needed).
    num_classes: number of classes (at most 200).
    train_per_class: train images per class.
    val_per_class: validation images per class.
    test_images: unlabelled test images.
    image_size: side of the square images (the real set: 64).
    seed: seed of the drawing; the same seed writes the same files.
    zip: write `tiny-imagenet-200.zip` (as downloaded) instead of the folder.

  Returns:
    The path of the `tiny-imagenet-200` folder, or of `tiny-imagenet-200.zip` when `zip`.
  """
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  designs = class_designs(num_classes, rng)
  wnids = draw_wnids(num_classes, rng)
  zip_path = output_dir / f'{FOLDER}.zip' if zip else None
  writer = _Writer(output_dir, zip_path)

  def draw(label: int) -> tuple[bytes, tuple[int, ...]]:
    pixels, box = draw_image(designs[label], image_size, rng)
    return encode_jpeg(pixels, rng.uniform() < GRAYSCALE_FRACTION), box

  writer.write('wnids.txt', ''.join(f'{w}\n' for w in wnids))
  writer.write('words.txt', ''.join(f'{line}\n' for line in words_lines(wnids, designs, rng)))
  for label, wnid in enumerate(wnids):
    boxes = []
    for i in range(train_per_class):
      name = f'{wnid}_{i}.JPEG'
      data, box = draw(label)
      writer.write(f'train/{wnid}/images/{name}', data)
      boxes.append('\t'.join(map(str, (name,) + box)))
    writer.write(f'train/{wnid}/{wnid}_boxes.txt', ''.join(f'{b}\n' for b in boxes))
  annotations = []
  for i, label in enumerate(rng.permutation(np.repeat(np.arange(num_classes), val_per_class))):
    data, box = draw(label)
    writer.write(f'val/images/val_{i}.JPEG', data)
    annotations.append('\t'.join(map(str, (f'val_{i}.JPEG', wnids[label]) + box)))
  writer.write('val/val_annotations.txt', ''.join(f'{a}\n' for a in annotations))
  for i in range(test_images):
    writer.write(f'test/images/test_{i}.JPEG', draw(int(rng.integers(num_classes)))[0])
  writer.close()
  return zip_path or writer.root


def main(argv=None) -> None:
  values = flags.FlagValues()
  flags.DEFINE_string('output', None, 'Folder to write the sample into.', flag_values=values)
  flags.mark_flag_as_required('output', flag_values=values)
  flags.DEFINE_integer(
      'num_classes', 10, 'Classes (distinct shape, colour and texture designs).',
      flag_values=values)
  flags.DEFINE_integer('train_per_class', 100, 'Train images per class.', flag_values=values)
  flags.DEFINE_integer('val_per_class', 20, 'Validation images per class.', flag_values=values)
  flags.DEFINE_integer('test_images', 100, 'Unlabelled test images.', flag_values=values)
  flags.DEFINE_integer(
      'image_size', 64, 'Side of the square images, in pixels.', flag_values=values)
  flags.DEFINE_integer('seed', 0, 'Seed of the drawing; same seed, same files.', flag_values=values)
  flags.DEFINE_bool('zip', False, 'Write tiny-imagenet-200.zip.', flag_values=values)
  try:
    values(['synthetic', *(sys.argv[1:] if argv is None else argv)])
  except flags.Error as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  args = values
  path = write_sample(args.output, num_classes=args.num_classes,
                      train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                      test_images=args.test_images, image_size=args.image_size,
                      seed=args.seed, zip=args.zip)
  print(path)


if __name__ == '__main__':
  main()
