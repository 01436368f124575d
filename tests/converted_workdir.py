"""Workdirs for prediction tests without training: random variables written as `best/`.

Training even a tiny model costs seconds per test module; evaluate, predict and export only
need a `config.json` and a `best/` checkpoint, which `commands.write_converted_workdir` writes
exactly as training does. The variables are made "sharp" (He-scaled dense layers,
non-trivial BatchNorm statistics), so the probabilities are far from uniform and a
comparison at 1e-4 means something.
"""

import jax
import numpy as np

from configs import default
from vgg_flax.core import models
from vgg_flax.interop import commands


def small_config(sample_folder, data_dir, *, image_size=64, depth=11):
  """The default config on the generated sample with a narrow VGG."""
  config = default.get_config()
  config.data_source = str(sample_folder)
  config.data_dir = str(data_dir)
  config.batch_size = 16
  config.eval_batch_size = 16
  config.image_size = image_size
  config.model.depth = depth
  config.model.width = 8
  config.model.hidden_units = 32
  config.progress_bar = False
  return config


def sharp_variables(model: models.VGG, image_size: int, seed: int = 0) -> dict:
  """Random variables of `model` whose outputs are far from uniform (numpy float32).

  Drawn with numpy onto `jax.eval_shape`'s tree: nothing is compiled.
  """
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name, shape = jax.tree_util.keystr(path), leaf.shape
    if "'kernel'" in name:  # He-scaled, fan-in: conv HWIO and dense (in, out).
      return rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape).astype(np.float32)
    low_high = {"'scale'": (0.5, 1.5), "'var'": (0.5, 2.0)}
    for key, (low, high) in low_high.items():
      if key in name:
        return rng.uniform(low, high, shape).astype(np.float32)
    return rng.normal(0, 0.1 if "'bias'" in name else 0.2, shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def write_workdir(workdir, config, num_classes: int, *, seed: int = 0) -> dict:
  """A workdir with `config.json` and a `best/` of sharp random variables; returns them."""
  model = models.create_model(config.model, num_classes=num_classes)
  variables = sharp_variables(model, config.image_size, seed)
  commands.write_converted_workdir(config, variables, str(workdir))
  return variables
