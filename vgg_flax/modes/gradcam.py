"""Grad-CAM (Selvaraju et al., 2017): where a trained VGG finds the evidence for a class.

For the rectified output A (h x w x k) of a conv block and a class's score y (its logit),
channel k weighs `alpha_k = mean over h, w of dy/dA_k`, and the heat map is
`ReLU(sum_k alpha_k A_k)`: positive where features that raise the class are active. It is
upsampled bilinearly to the image. The default block is the last (`config.explain_layer`
picks another), as in the paper, whose VGG-16 maps came from its last conv layer.

`class_activation_maps` needs only the VGG and a block name: it reaches the block's output
through Flax's method interception, so the model is not changed. One jitted program per
batch shape runs a forward pass and two backward passes from it (for the top-1 class and
for the true class) on a whole batch, sharded over the devices, on any backend.

What is written (process 0), for `--mode=predict` and `--mode=evaluate` with `explain=True`
(the pictures drawn by `vgg_flax.plots`):

  explanations/<image>.png  the image, its heat map for the top-1 class and, where the true
                            class is known and differs, for the true class
  plots/gradcam_grid.png    those strips for up to `GRID_IMAGES` images
"""

import dataclasses
import functools
import os
import pathlib
from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import pipeline
from vgg_flax import plots
from vgg_flax.core import models
from vgg_flax.core import preprocess
from vgg_flax.core import sharding
from vgg_flax.errors import ConfigError
from vgg_flax.modes import predictions as model_predictions
from vgg_flax.workdir import files
from vgg_flax.workdir import restore

EXPLANATIONS_DIR = files.EXPLANATIONS_DIR
GRID_FILE = files.GRADCAM_GRID_FILE
GRID_IMAGES = 16  # Images in plots/gradcam_grid.png (the first, or the most confident mistakes).
BATCH_SIZE = 32  # Images per jitted call (rounded up to a multiple of the devices).
RIGHT_COLOUR, WRONG_COLOUR = '#1a7f37', '#cf222e'  # Titles of a right and a wrong top-1.


# --- The maps ----------------------------------------------------------------------------


def layer_names(model: models.VGG) -> list[str]:
  """The conv blocks Grad-CAM can explain, input to output: `stage1_1`, ..., `stage5_3`."""
  return [f'stage{stage + 1}_{i + 1}'
          for stage, kernels in enumerate(models.stage_plan(model.depth, model.conv1x1))
          for i in range(len(kernels))]


def resolve_layer(model: models.VGG, layer: str) -> str:
  """`layer`, or the last block for ''; another name is a one-line ConfigError."""
  names = layer_names(model)
  if not layer:
    return names[-1]
  if layer not in names:
    raise ConfigError(
        f'explain_layer={layer!r} is not a conv block of this VGG-{model.depth}; use one of '
        f'{", ".join(names)} (\'\' = {names[-1]}).')
  return layer


def _logits_and_features(model: models.VGG, variables: Any, x: jax.Array, layer: str,
                         delta: jax.Array | float) -> tuple[jax.Array, jax.Array]:
  """Logits, with `delta` added to the block's rectified output A; and A itself.

  The block ends in a module (its BatchNorm, or its conv without BatchNorm) and then the
  VGG's ReLU. The interceptor hands that ReLU `relu(out) + tiny + delta`: the same values
  (`tiny`, the smallest normal float, vanishes in any sum with a feature), but the ReLU's
  input is then positive everywhere, so the gradient reaching `delta` is dy/dA at every
  position, as the paper defines it, and not only where a unit is active.
  """
  module = f'{layer}_bn' if model.batch_norm else f'{layer}_conv'
  features = []

  def intercept(call, args, kwargs, context):
    out = call(*args, **kwargs)
    if context.module.name != module or context.method_name != '__call__':
      return out
    rectified = jax.nn.relu(out)
    features.append(rectified)
    return rectified + jnp.finfo(out.dtype).tiny + delta

  with nn.intercept_methods(intercept):
    logits = model.apply(variables, x, train=False)
  return logits, features[0]


def class_activation_maps(model: models.VGG, variables: Any, images: jax.Array,
                          labels: jax.Array, *, layer: str,
                          image_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Grad-CAM of a batch for its top-1 classes and for `labels`, at the block's resolution.

  Args:
    model: the VGG.
    variables: its params and BatchNorm statistics.
    images: uint8 (n, H, W, C) at their stored size (resized to `image_size` as in eval).
    labels: (n,) classes to explain besides the top-1; -1 explains the top-1 again.
    layer: a block of `layer_names(model)`.
    image_size: the side the model sees.

  Returns:
    (log-probabilities (n, classes), top-1 maps (n, h, w), label maps (n, h, w)), float32;
    the maps are not normalised.
  """
  x = preprocess.preprocess(images, image_size=image_size, dtype=model.dtype)
  forward = functools.partial(_logits_and_features, model, variables, x, layer)
  shape = jax.eval_shape(forward, 0.0)[1]
  logits, backward, features = jax.vjp(forward, jnp.zeros(shape.shape, shape.dtype),
                                       has_aux=True)
  top1 = jnp.argmax(logits, axis=-1)
  targets = jnp.where(labels >= 0, labels, top1)
  features = features.astype(jnp.float32)

  def heat_map(classes: jax.Array) -> jax.Array:
    # The score of each image's class; images are independent in eval mode, so one
    # backward pass gives every image's own gradient.
    (gradient,) = backward(jax.nn.one_hot(classes, logits.shape[-1], dtype=logits.dtype))
    weights = jnp.mean(gradient.astype(jnp.float32), axis=(1, 2))  # (n, k)
    return jax.nn.relu(jnp.einsum('nhwk,nk->nhw', features, weights))

  return jax.nn.log_softmax(logits), heat_map(top1), heat_map(targets)


def upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
  """(n, h, w) maps to (n, *size), bilinear (half-pixel centres, as the image resize)."""
  return jax.image.resize(maps, (maps.shape[0], *size), method='bilinear')


@dataclasses.dataclass
class Explanations:
  """Grad-CAM of a set of images, maps at the images' size, in the images' order.

  Attributes:
    probabilities: (n, classes).
    top1: (n,) the most probable class.
    top1_maps: (n, H, W) heat maps for `top1`.
    label_maps: (n, H, W) heat maps for the given labels (for `top1` where unlabelled).
  """
  probabilities: np.ndarray
  top1: np.ndarray
  top1_maps: np.ndarray
  label_maps: np.ndarray


def explain(model: models.VGG, variables: Any, images: np.ndarray,
            labels: np.ndarray | None = None, *, layer: str = '', image_size: int,
            mesh=None, batch_size: int = BATCH_SIZE) -> Explanations:
  """Grad-CAM of uint8 images (the same array on every process), in batches.

  Args:
    model: the VGG.
    variables: its params and BatchNorm statistics (replicated on `mesh`).
    images: uint8 (n, H, W, C) at the dataset's stored size.
    labels: (n,) true classes, -1 where unknown; None: all unknown.
    layer: a block of `layer_names(model)`; '' for the last.
    image_size: the side the model sees.
    mesh: the device mesh; default all devices.
    batch_size: images per jitted call (rounded up to a multiple of the devices).

  Returns:
    The explanations; the maps are upsampled to (H, W).
  """
  layer = resolve_layer(model, layer)
  mesh = mesh or sharding.create_mesh()
  devices = mesh.devices.size
  batch_size = -(-min(batch_size, len(images)) // devices) * devices
  labels = np.full(len(images), -1, np.int32) if labels is None else labels.astype(np.int32)
  step = _jitted_maps(model, layer, image_size, tuple(images.shape[1:3]), mesh)
  parts = []
  for start in range(0, len(images), batch_size):
    # The last batch is padded by repeating its first image: every call has one shape.
    index = np.minimum(np.arange(start, start + batch_size), len(images) - 1)
    batch = [_global_array(a[index], sharding.data_sharding(mesh)) for a in (images, labels)]
    result = multihost_utils.process_allgather(step(variables, *batch), tiled=True)
    parts.append([np.asarray(r)[:len(images) - start] for r in result])
  log_probs, top1_maps, label_maps = (np.concatenate(p) for p in zip(*parts))
  return Explanations(probabilities=np.exp(log_probs), top1=log_probs.argmax(-1),
                      top1_maps=top1_maps, label_maps=label_maps)


def _global_array(array: np.ndarray, batch_sharding) -> jax.Array:
  """An array every process holds whole, as one global array sharded over `data`."""
  return jax.make_array_from_callback(array.shape, batch_sharding, lambda index: array[index])


def _jitted_maps(model: models.VGG, layer: str, image_size: int, size: tuple[int, int],
                 mesh) -> Any:
  """`class_activation_maps`, upsampled to `size`, jitted for the mesh."""

  def maps(variables, images, labels):
    log_probs, top1, label = class_activation_maps(model, variables, images, labels,
                                                   layer=layer, image_size=image_size)
    return log_probs, upsample(top1, size), upsample(label, size)

  batch = sharding.data_sharding(mesh)
  return jax.jit(maps, in_shardings=(sharding.replicated(mesh), batch, batch),
                 out_shardings=batch)


# --- Pictures ------------------------------------------------------------------------------


def explanation_strip(index: int, name: str, images: np.ndarray, labels: np.ndarray,
                      result: Explanations, class_names: Sequence[str]) -> np.ndarray:
  """One image's picture: the image, its top-1 map and (true class known, and wrong) its
  true class's map, each under a title; green titles for a right top-1, red for a wrong one."""
  image, label, top1 = images[index], int(labels[index]), int(result.top1[index])
  probabilities = result.probabilities[index]
  colour = 'black' if label < 0 else (RIGHT_COLOUR if top1 == label else WRONG_COLOUR)
  maps = [result.top1_maps[index]]
  titles = [os.path.basename(name),
            f'top-1: {plots.short_words(class_names[top1])}\np={probabilities[top1]:.2f}']
  if label >= 0 and label != top1:
    maps.append(result.label_maps[index])
    titles.append(f'true: {plots.short_words(class_names[label])}\n'
                  f'p={probabilities[label]:.2f}')
  return plots.draw_heat_maps(image, maps, titles, ['black'] + [colour] * len(maps))


def explanation_paths(names: Sequence[str]) -> list[str]:
  """`explanations/` file names: each image's name with `.png`, made unique."""
  paths, seen = [], set()
  for name in names:
    path = str(pathlib.PurePosixPath(name.replace(os.sep, '/')).with_suffix('.png'))
    if path in seen:
      path = f'{name}.png'  # `a.jpg` and `a.png` side by side.
    seen.add(path)
    paths.append(path)
  return paths


def write_explanations(workdir: str | os.PathLike, names: Sequence[str], images: np.ndarray,
                       labels: np.ndarray, result: Explanations, class_names: Sequence[str], *,
                       grid: Sequence[int] | None = None) -> pathlib.Path:
  """Writes `explanations/<name>.png` for every image and `plots/gradcam_grid.png`.

  Args:
    workdir: the training workdir.
    names: each image's name (a path below the split or the images' folder).
    images: uint8 (n, H, W, C).
    labels: (n,) true classes, -1 where unknown.
    result: from `explain`.
    class_names: words of each class.
    grid: the images of the grid, in order; None: the first `GRID_IMAGES`.

  Returns:
    The grid's path.
  """
  workdir = pathlib.Path(workdir)
  strips = [explanation_strip(i, name, images, labels, result, class_names)
            for i, name in enumerate(names)]
  for strip, path in zip(strips, explanation_paths(names)):
    plots.write_png(workdir / EXPLANATIONS_DIR / path, strip)
  chosen = list(range(min(GRID_IMAGES, len(names)))) if grid is None else list(grid)
  path = workdir / files.PLOTS_DIR / GRID_FILE
  plots.write_png(path, plots.join_strips([strips[i] for i in chosen]))
  return path


# --- The modes' calls --------------------------------------------------------------------


def _explain_restored(restored: restore.RestoredModel, images: np.ndarray,
                      labels: np.ndarray | None, mesh) -> Explanations:
  config = restored.config
  return explain(restored.model, restored.variables, images, labels,
                 layer=config.explain_layer, image_size=config.image_size,
                 mesh=mesh)


def labels_from_folders(paths: Sequence[str], label_names: Sequence[str]) -> np.ndarray:
  """Each image's class when it sits in a folder named after one (`val/cat/1.jpg`), else -1."""
  index = {name: i for i, name in enumerate(label_names)}
  return np.array([index.get(pathlib.Path(p).parent.name, -1) for p in paths], np.int32)


def explain_own_images(restored: restore.RestoredModel, images: np.ndarray,
                       paths: Sequence[str], *, mesh=None) -> pathlib.Path:
  """Grad-CAM of `--mode=predict`'s own images; an image in a class's folder (`val/cat/`)
  also gets its true class's map. Names are the paths below the images' common folder."""
  resolve_layer(restored.model, restored.config.explain_layer)  # Before computing.
  labels = labels_from_folders(paths, restored.info.label_names)
  result = _explain_restored(restored, images, labels, mesh)
  root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
  names = [os.path.relpath(os.path.abspath(p), root) for p in paths]
  return _write(restored, names, images, labels, result)


def explain_first_images(restored: restore.RestoredModel,
                         predictions: model_predictions.SplitPredictions, *,
                         mesh=None) -> pathlib.Path:
  """Grad-CAM of `--mode=predict` on a split: its first images (`predictions.images`)."""
  labels = _labels_of(predictions, predictions.image_names)
  result = _explain_restored(restored, predictions.images, labels, mesh)
  return _write(restored, list(predictions.image_names), predictions.images, labels, result)


def explain_mistakes(restored: restore.RestoredModel,
                     predictions: model_predictions.SplitPredictions, *,
                     mesh=None) -> pathlib.Path | None:
  """Grad-CAM of the split's `GRID_IMAGES` most confident mistakes (`--mode=evaluate`).

  Returns:
    The grid's path, or None when the model made no mistake.
  """
  wrong = np.flatnonzero(predictions.predictions != predictions.labels)
  if not len(wrong):
    print(f'explain: no mistakes on {predictions.split}: no Grad-CAM grid.')
    return None
  confidence = predictions.probabilities[wrong, predictions.predictions[wrong]]
  chosen = wrong[np.argsort(-confidence, kind='stable')[:GRID_IMAGES]]
  names = list(predictions.file_names[chosen])
  images = read_images(restored.dataset, predictions.split, names)
  labels = predictions.labels[chosen]
  result = _explain_restored(restored, images, labels, mesh)
  return _write(restored, names, images, labels, result)


def _labels_of(predictions: model_predictions.SplitPredictions,
               names: Sequence[str]) -> np.ndarray:
  row = {name: i for i, name in enumerate(predictions.file_names)}
  return np.array([predictions.labels[row[n]] for n in names], np.int32)


def _write(restored: restore.RestoredModel, names: Sequence[str], images: np.ndarray,
           labels: np.ndarray, result: Explanations) -> pathlib.Path:
  path = restored.workdir / files.PLOTS_DIR / GRID_FILE
  if jax.process_index() == 0:
    write_explanations(restored.workdir, names, images, labels, result,
                       restored.info.class_names)
  layer = resolve_layer(restored.model, restored.config.explain_layer)
  print(f'Grad-CAM ({layer}) of {len(names)} images -> {restored.workdir / EXPLANATIONS_DIR}/, '
        f'{path}')
  return path


def read_images(dataset: pipeline.Dataset, split: str, names: Sequence[str]) -> np.ndarray:
  """The images of a split with these file names, in that order (every process reads all).

  Raises:
    KeyError: a name that is not in the split.
  """
  wanted = set(names)
  feature = dataset.builder.info.features['image']
  found = {}
  records = dataset.builder.as_dataset(split=split, shuffle_files=False,
                                       decoders={'image': tfds.decode.SkipDecoding()})
  for example in records.as_numpy_iterator():
    name = example['file_name'].decode()
    if name in wanted:
      found[name] = feature.decode_example(example['image']).numpy()
      if len(found) == len(wanted):
        break
  return np.stack([found[n] for n in names])
