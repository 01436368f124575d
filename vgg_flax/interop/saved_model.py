"""A trained model as a TensorFlow SavedModel (jax2tf), served on CPU, GPU or TPU.

The `serving_default` signature takes `images`: uint8 `[N, image_size, image_size, 3]` and
returns `probabilities`: float32 `[N, num_classes]`, normalised and computed exactly as
`--mode=predict` does.
"""

import logging as pylogging
import pathlib

import jax
import jax.numpy as jnp
import ml_collections

from vgg_flax.core import models
from vgg_flax.core import steps

# The SavedModel is lowered for each, so it serves on any of them whatever trained it.
SERVING_PLATFORMS = ('cpu', 'cuda', 'tpu')
# The JAX computation is lowered for a fixed batch of this many images, and the signature
# pads any batch to a multiple of it and maps over the chunks. A symbolic batch dimension
# would be simpler, but JAX guards one with a `shape_assertion` op newer than TensorFlow
# 2.21 (the newest release) can read ("failed to deserialize portable artifact"), and offers
# no public switch to leave the guard out. Inference is per image (BatchNorm uses its running
# statistics), so the padding changes no result.
SERVING_CHUNK = 16


def serving_function(model: models.VGG, config: ml_collections.ConfigDict):
  """`(variables, uint8 images) -> probabilities`, exactly as `--mode=predict` computes them."""

  def probabilities(variables, images):
    log_probs = steps.infer_log_probs(model.apply, variables, images,
                                      image_size=config.image_size,
                                      dtype=jnp.dtype(config.dtype))
    return jnp.exp(log_probs)

  return probabilities


def save_saved_model(model: models.VGG, variables: dict, config: ml_collections.ConfigDict,
                     path: pathlib.Path) -> None:
  """Writes a SavedModel with the `serving_default` signature (see the module docstring).

  The variables are `tf.Variable`s of the SavedModel rather than constants in the graph, so
  models of any size stay under the 2 GiB limit of a graph. The computation is lowered for
  `SERVING_PLATFORMS`, not only for the platform exporting it.
  """
  # Imported here: importing the package must not pull in TensorFlow's converter.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  # Imported for what its import does: it keeps TensorFlow off the accelerators (JAX's).
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top,unused-import
  size = int(config.image_size)
  module = tf.Module()
  module.variables_tree = jax.tree.map(tf.Variable, variables)
  convert_fn = jax2tf.convert(serving_function(model, config), with_gradient=False,
                              native_serialization_platforms=SERVING_PLATFORMS)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, size, size, 3], tf.uint8, name='images')])
  def serve(images):
    count = tf.shape(images)[0]
    padded = tf.pad(images, [[0, -count % SERVING_CHUNK], [0, 0], [0, 0], [0, 0]])
    chunks = tf.reshape(padded, [-1, SERVING_CHUNK, size, size, 3])
    probabilities = tf.map_fn(lambda chunk: convert_fn(module.variables_tree, chunk), chunks,
                              fn_output_signature=tf.float32)
    return {'probabilities': tf.reshape(probabilities, [-1, model.num_classes])[:count]}

  module.serve = serve
  # Saving sets absl's logger to WARNING (TensorFlow's doing); the caller's logging stays.
  absl_logger = pylogging.getLogger('absl')
  level = absl_logger.level
  try:
    tf.saved_model.save(module, str(path), signatures={'serving_default': serve})
  finally:
    absl_logger.setLevel(level)
