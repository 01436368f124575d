"""Image preprocessing on the device, inside the jitted step.

The host pipeline hands over uint8 batches at their stored size; augmentation, resizing and
normalisation happen here, vectorised over the batch, so each image gets its own random
flip and crop at no cost to the host.
"""

import jax
import jax.numpy as jnp


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Flips each image horizontally with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_crop(rng: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  """Zero-pads each image by `padding` pixels a side, then crops a random window of the
  original size from it, a different window for each image."""
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (n, 2), 0, 2 * padding + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


def preprocess(images: jax.Array, *, image_size: int, rng: jax.Array | None = None,
               flip: bool = False, crop_padding: int = 0, dtype=jnp.float32) -> jax.Array:
  """Augments (when given a key), resizes and normalises a batch of images.

  Args:
    images: uint8 (N, H, W, 3) batch; (N, H, W, 1) grayscale datasets become 3 channels.
    image_size: side of the square images the model sees; resized (bilinear) when it
      differs from the input size.
    rng: key for the random flip and crop; None for evaluation (nothing random).
    flip: random horizontal flip, each image on its own (needs `rng`).
    crop_padding: random crop after zero padding by this many pixels; 0 = no crop.
    dtype: dtype of the result.

  Returns:
    (N, image_size, image_size, 3) images in [-1, 1], as the original project's
    `Normalize(mean=0.5, std=0.5)` after scaling to [0, 1].
  """
  if rng is not None:
    flip_rng, crop_rng = jax.random.split(rng)
    if flip:
      images = random_flip(flip_rng, images)
    if crop_padding > 0:
      images = random_crop(crop_rng, images, crop_padding)
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:  # Grayscale datasets (e.g. MNIST) feed the same RGB model.
    x = jnp.repeat(x, 3, axis=-1)
  n, h, w, c = x.shape
  if (h, w) != (image_size, image_size):
    x = jax.image.resize(x, (n, image_size, image_size, c), method='bilinear')
  return (x / 127.5 - 1.0).astype(dtype)
