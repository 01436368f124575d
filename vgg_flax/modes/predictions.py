"""One model's predictions over a split or an array of images, on every process.

`steps.eval_step` gives each batch's log-probabilities and clu metrics. Training merges the
metrics of its validation split (`steps.evaluate_batches`) and never fetches the
log-probabilities; `predict_split` also gathers them, with the labels and file names, from
every process, so evaluate, predict and the ensemble read the predictions and the very
metrics training reports.

Prediction is deterministic (no augmentation) and covers every image of a split exactly once:
padded examples are masked out, and rows come back in file-name order.
"""

import dataclasses
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from input_pipeline import tiny_imagenet
from vgg_flax.core import sharding
from vgg_flax.core import steps
from vgg_flax.workdir import restore

# File names travel to the devices as fixed-width bytes, so every process gathers them in
# the same order as the predictions (see `_gather`).
MAX_FILE_NAME_BYTES = 256


@dataclasses.dataclass
class SplitPredictions:
  """One model's outputs on every image of a split, in file-name order.

  Attributes:
    split: the split's name.
    file_names: (n,) image file names.
    labels: (n,) int32 class indices; -1 where the split is unlabelled.
    log_probs: (n, num_classes) float32 log-softmax of the logits.
    images: up to `keep_images` of the first images (uint8), for figures.
    image_names: the file names of `images`.
    metrics: loss, accuracy and top5_accuracy of the split as the eval step's merged clu
      metrics compute them (meaningless for an unlabelled split).
  """
  split: str
  file_names: np.ndarray
  labels: np.ndarray
  log_probs: np.ndarray
  images: np.ndarray
  image_names: np.ndarray
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def probabilities(self) -> np.ndarray:
    return np.exp(self.log_probs)

  @property
  def predictions(self) -> np.ndarray:
    return np.argmax(self.log_probs, axis=-1)


def create_eval_step(restored: restore.RestoredModel, mesh) -> Callable:
  """The jitted eval step of a restored model, with its config's `tta`."""
  return steps.jit_eval_step(restored.model.apply, restored.config, mesh,
                             tta=restored.config.tta)


def _encode_names(names: np.ndarray) -> np.ndarray:
  encoded = np.zeros((len(names), MAX_FILE_NAME_BYTES), np.uint8)
  for i, name in enumerate(names):
    data = name.encode()
    if len(data) > MAX_FILE_NAME_BYTES:
      raise pipeline.DataError(f'file name {name!r} is longer than {MAX_FILE_NAME_BYTES} bytes.')
    encoded[i, :len(data)] = np.frombuffer(data, np.uint8)
  return encoded


def _decode_names(encoded: np.ndarray) -> np.ndarray:
  return np.array([bytes(row).rstrip(b'\0').decode() for row in encoded], dtype=object)


def _gather(local: dict[str, np.ndarray], batch_sharding) -> dict[str, np.ndarray]:
  """This process's per-example arrays -> the global batch as numpy, on every process.

  The arrays take the same route as the images (one global array sharded over `data`), so
  the rows of every field line up with the predictions.
  """
  global_arrays = {k: jax.make_array_from_process_local_data(batch_sharding, v)
                   for k, v in local.items()}
  gathered = multihost_utils.process_allgather(global_arrays, tiled=True)
  return {k: np.asarray(v) for k, v in gathered.items()}


def predict_split(restored: restore.RestoredModel, split: str, *, mesh=None,
                  keep_images: int = 0) -> SplitPredictions:
  """Log-probabilities and metrics of a model on every image of a split.

  Args:
    restored: from `restore.restore_model`.
    split: a split of the model's dataset.
    mesh: the device mesh; default all devices.
    keep_images: how many of the first images to keep (for figures).

  Returns:
    The predictions, padding removed, in file-name order.

  Raises:
    DataError: the dataset has no such split, or it is empty.
  """
  config, info = restored.config, restored.info
  pipeline.split_size(info, split)  # A DataError naming the known splits.
  mesh = mesh or sharding.create_mesh()
  batch_sharding = sharding.data_sharding(mesh)
  parts, images, image_names = [], [], []

  def collect(batch: dict, log_probs: jax.Array) -> None:
    rows = _gather({'label': batch['label'], 'mask': batch['mask'],
                    'name': _encode_names(batch['file_name'])}, batch_sharding)
    rows['log_probs'] = np.asarray(multihost_utils.process_allgather(log_probs, tiled=True))
    parts.append({k: v[rows['mask']] for k, v in rows.items()})
    if sum(map(len, images)) < keep_images:
      images.append(batch['image'][batch['mask']])
      image_names.append(batch['file_name'][batch['mask']])

  merged = steps.evaluate_batches(create_eval_step(restored, mesh), restored.variables,
                            restored.dataset.eval_batches(config, split), mesh, on_batch=collect)
  if not parts or not sum(len(p['label']) for p in parts):
    raise pipeline.DataError(f'split {split!r} is empty: nothing to predict.')
  names = _decode_names(np.concatenate([p['name'] for p in parts]))
  order = sorted(range(len(names)), key=lambda i: tiny_imagenet.natural_key(names[i]))
  kept = np.concatenate(images)[:keep_images] if images else np.zeros((0,), np.uint8)
  kept_names = np.concatenate(image_names)[:keep_images] if images else np.zeros((0,), object)
  return SplitPredictions(
      split=split, file_names=names[order],
      labels=np.concatenate([p['label'] for p in parts])[order].astype(np.int32),
      log_probs=np.concatenate([p['log_probs'] for p in parts])[order], images=kept,
      image_names=kept_names, metrics=steps.computed(merged))


def predict_array(restored: restore.RestoredModel, images: np.ndarray, *,
                  mesh=None) -> np.ndarray:
  """Log-probabilities of a model for uint8 images that every process holds.

  Args:
    restored: from `restore.restore_model`.
    images: (n, H, W, C) uint8, the same array on every process.
    mesh: the device mesh; default all devices.

  Returns:
    (n, num_classes) float32 log-probabilities, in the order of `images`.
  """
  mesh = mesh or sharding.create_mesh()
  batch_sharding = sharding.data_sharding(mesh)
  local = pipeline.local_batch_size(restored.config.eval_batch_size, 'eval_batch_size')
  global_size = local * jax.process_count()
  num_batches = -(-len(images) // global_size)
  # The last batch is padded by repeating images from the start (dropped after): every batch
  # has the compiled shape.
  index = np.arange(num_batches * global_size) % len(images)
  log_probs = np.zeros((len(images), restored.info.num_classes), np.float32)

  def batches():
    for start in range(0, len(index), global_size):
      mine = index[start:start + global_size][jax.process_index() * local:][:local]
      position = np.arange(start, start + global_size)[jax.process_index() * local:][:local]
      # No labels: the metrics the step computes alongside are not used.
      yield {'image': images[mine], 'label': np.full(len(mine), -1, np.int32),
             'mask': position < len(images), 'position': position.astype(np.int32)}

  def collect(batch: dict, result: jax.Array) -> None:
    rows = _gather({'position': batch['position']}, batch_sharding)
    result = np.asarray(multihost_utils.process_allgather(result, tiled=True))
    real = rows['position'] < len(images)
    log_probs[rows['position'][real]] = result[real]

  steps.evaluate_batches(create_eval_step(restored, mesh), restored.variables, batches(), mesh,
                         on_batch=collect)
  return log_probs
