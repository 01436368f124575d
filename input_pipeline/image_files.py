"""Image files made by someone else: decoded only as the formats meant, within size limits.

Every image the project reads from outside (dataset sources, `predict_images`) goes through
`open_image`:
- Only `FORMATS` are tried. Pillow otherwise picks a decoder by the file's content among
  every format it knows, some of which hand the file to other programs (EPS to Ghostscript)
  or raise what no caller expects (a crafted DDS raises NotImplementedError).
- A file over `MAX_IMAGE_BYTES`, or whose header declares more than `MAX_PIXELS` pixels, is
  refused before it is decoded.
- Any failure of a decoder, whatever it raises, is a one-line `DataError` naming the file.

Zip archives are checked member by member before reading (`check_zip_member`): the declared
size against the same byte cap, and the compression ratio, so a small zip cannot expand into
gigabytes in memory.
"""

import io
import os
import warnings
import zipfile

from PIL import Image


class DataError(ValueError):
  """Missing or malformed input data; the message names the file and what was expected."""


# The formats photos and datasets come in, and no others. Each is covered by a test.
FORMATS = ('JPEG', 'PNG', 'BMP', 'GIF', 'WEBP')
# A Tiny ImageNet image is 2-3 KB; the largest camera JPEGs (50 MP) are 20-30 MB. 32 MiB
# admits any photo while bounding what one file can cost in memory.
MAX_IMAGE_BYTES = 32 << 20
# 50 MP: a 48 MP phone photo passes; a decompression bomb (a few KB declaring 100k x 100k
# pixels) is refused from its header, before any pixel is decoded.
MAX_PIXELS = 50_000_000
# Photos and JPEGs do not compress in a zip (ratio about 1); text files about 3-10x. A member
# that claims more is refused before it is inflated.
MAX_COMPRESSION_RATIO = 100
# Below this size a member may compress as it likes (a file of repeated bytes is harmless).
SMALL_MEMBER_BYTES = 1 << 20


def check_size(size: int, name: str) -> None:
  """Refuses an image file larger than `MAX_IMAGE_BYTES`."""
  if size > MAX_IMAGE_BYTES:
    raise DataError(f'{name}: {size:,} bytes; an image may have at most '
                    f'{MAX_IMAGE_BYTES:,} bytes (is it really an image?).')


def read_limited(path, name: str, *, follow_links: bool = True) -> bytes:
  """A file's bytes, refused (before reading) when over `MAX_IMAGE_BYTES`.

  Args:
    path: the file.
    name: the file, for messages.
    follow_links: False refuses a symbolic link (OSError ELOOP) without reading its target.

  Raises:
    DataError: the file is too large.
    OSError: it cannot be opened or read (the caller words that for its context).
  """
  flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
  with os.fdopen(os.open(path, flags), 'rb') as f:
    check_size(os.fstat(f.fileno()).st_size, name)
    return f.read(MAX_IMAGE_BYTES + 1)  # A file growing meanwhile is cut, then refused.


def check_zip_member(info: zipfile.ZipInfo, name: str, max_bytes: int = MAX_IMAGE_BYTES) -> None:
  """Refuses a zip member whose declared size or compression ratio is implausible.

  Args:
    info: the member's entry in the zip's directory (read without inflating anything).
    name: the member, for messages.
    max_bytes: the most the member may inflate to.
  """
  if info.file_size > max_bytes:
    raise DataError(f'{name}: declares {info.file_size:,} bytes inflated; at most '
                    f'{max_bytes:,} are read from one member.')
  ratio = info.file_size / max(info.compress_size, 1)
  if info.file_size > SMALL_MEMBER_BYTES and ratio > MAX_COMPRESSION_RATIO:
    raise DataError(f'{name}: compressed {ratio:,.0f}:1 ({info.compress_size:,} -> '
                    f'{info.file_size:,} bytes); refusing a possible zip bomb (at most '
                    f'{MAX_COMPRESSION_RATIO}:1 above {SMALL_MEMBER_BYTES:,} bytes).')


def open_image(data: bytes, name: str, *, failure: str = 'cannot decode the image',
               expected: str = f'an image file ({", ".join(FORMATS)})') -> Image.Image:
  """The image in `data`, decoded in full, or a one-line `DataError`.

  Args:
    data: the file's bytes.
    name: the file, for messages.
    failure, expected: the words of a decoding error, `<name>: <failure> (<cause>);
      expected <expected>.`

  Returns:
    A loaded PIL image of one of `FORMATS`.

  Raises:
    DataError: empty, too large, not one of `FORMATS`, too many pixels, truncated, or any
      other decoder failure.
  """
  if not data:
    raise DataError(f'{name}: {failure} (empty file); expected {expected}.')
  check_size(len(data), name)
  try:
    with warnings.catch_warnings():
      # Pillow warns from 89 MP on; `MAX_PIXELS`, checked next, is stricter.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data), formats=FORMATS)
  except Image.UnidentifiedImageError:
    raise DataError(f'{name}: {failure} (not {", ".join(FORMATS)}); expected '
                    f'{expected}.') from None
  except Exception as error:  # pylint: disable=broad-except
    # Pillow's plugins raise many types (SyntaxError, struct.error, NotImplementedError...).
    raise DataError(f'{name}: {failure} ({_cause(error)}); expected {expected}.') from None
  width, height = image.size
  if width * height > MAX_PIXELS:
    image.close()
    raise DataError(f'{name}: {width}x{height} pixels; at most {MAX_PIXELS:,} are decoded.')
  try:
    image.load()  # Decodes every pixel: truncated and damaged files fail here.
  except Exception as error:  # pylint: disable=broad-except
    image.close()
    raise DataError(f'{name}: {failure} ({_cause(error)}); expected {expected}.') from None
  return image


def _cause(error: BaseException) -> str:
  """The exception's type and the first line of its message: every error stays one line."""
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[0]}' if text else type(error).__name__
