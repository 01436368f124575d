"""On-device preprocessing: value range, shapes, per-image flip and crop, determinism."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from vgg_flax.core import preprocess as pp


def asymmetric_batch(n=32, size=16):
  """n copies of one image that differs from its mirror and from any shift of itself."""
  image = np.random.default_rng(0).integers(1, 256, (size, size, 3), dtype=np.uint8)
  return jnp.asarray(np.repeat(image[None], n, axis=0))


def test_normalises_to_minus_one_one():
  rows = np.array([0, 51, 255], np.uint8)[None, :, None, None]
  images = jnp.asarray(np.broadcast_to(rows, (1, 3, 3, 3)))
  out = np.asarray(pp.preprocess(images, image_size=3))
  np.testing.assert_allclose(out[0, :, 0, 0], [-1.0, 51 / 127.5 - 1, 1.0], atol=1e-6)
  assert out.dtype == np.float32


def test_shapes_and_dtype():
  images = asymmetric_batch(4, 64)
  assert pp.preprocess(images, image_size=64).shape == (4, 64, 64, 3)
  out = pp.preprocess(images, image_size=32, rng=jax.random.key(0), flip=True, crop_padding=4,
                      dtype=jnp.bfloat16)
  assert out.shape == (4, 32, 32, 3) and out.dtype == jnp.bfloat16
  assert -1.0 <= float(out.min()) and float(out.max()) <= 1.0
  upsized = pp.preprocess(images, image_size=96)
  assert upsized.shape == (4, 96, 96, 3)
  assert -1.0 <= float(upsized.min()) and float(upsized.max()) <= 1.0


def test_without_rng_nothing_random():
  images = asymmetric_batch(8)
  expected = np.asarray(images, np.float32) / 127.5 - 1
  out = pp.preprocess(images, image_size=16, flip=True, crop_padding=4)
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)


def test_flip_varies_per_image():
  images = asymmetric_batch()
  out = np.asarray(pp.random_flip(jax.random.key(1), images))
  flipped = [bool((o == np.asarray(images[0])[:, ::-1]).all()) for o in out]
  kept = [bool((o == np.asarray(images[0])).all()) for o in out]
  assert all(f != k for f, k in zip(flipped, kept))  # Each is one or the other.
  assert 4 <= sum(flipped) <= 28  # Some of each: per image, not per batch.


def test_crop_varies_per_image_and_is_a_window_of_the_padded_image():
  images, padding = asymmetric_batch(), 4
  out = np.asarray(pp.random_crop(jax.random.key(2), images, padding))
  padded = np.pad(np.asarray(images[0]), ((padding, padding), (padding, padding), (0, 0)))
  offsets = set()
  for crop in out:
    matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
               if (padded[dy:dy + 16, dx:dx + 16] == crop).all()]
    assert len(matches) == 1
    offsets.add(matches[0])
  assert len(offsets) >= 10  # 32 images over 81 windows: clearly not one shared offset.


def test_same_key_same_output_other_key_differs():
  run = jax.jit(functools.partial(pp.preprocess, image_size=16, flip=True, crop_padding=4))
  images = asymmetric_batch()
  a, b = run(images, rng=jax.random.key(3)), run(images, rng=jax.random.key(3))
  c = run(images, rng=jax.random.key(4))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_does_not_import_tensorflow():
  code = 'import sys, vgg_flax.core.preprocess; assert "tensorflow" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], check=True)
