"""Evaluation and prediction with the `best/` checkpoint of one workdir.

Each workdir is rebuilt from the config saved in it (`config.json`), so a model is restored
with exactly the depth, width, image size and dtype it was trained with. The config given on
the command line contributes only what does not change the model:

  * the splits and the batch size of evaluation (`eval_split`, `predict_split`,
    `eval_batch_size`, `cache`, `progress_bar`), test-time augmentation (`tta`) and the
    user's own images (`predict_images`);
  * the whole data section (`dataset`, `data_source`, `data_dir`, `skip_corrupt`, `sample`)
    when it names data (`data_source` set or `sample.enabled`), e.g. after the data moved;
    otherwise the workdir's own data section is used.

Prediction is deterministic (no augmentation) and covers every image of a split exactly once:
padded examples are masked out, and rows come back in file-name order.

The ensemble of several workdirs and the votes are in `vgg_flax.ensemble`.
"""

import dataclasses
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from input_pipeline import tiny_imagenet
from vgg_flax import checkpointing
from vgg_flax import configuration
from vgg_flax import metrics as vgg_metrics
from vgg_flax import models
from vgg_flax import own_images
from vgg_flax import per_class
from vgg_flax import reporting
from vgg_flax import sharding
from vgg_flax import steps

# Fields of the command-line config that never change the model (see the module docstring).
RUNTIME_FIELDS = ('eval_split', 'predict_split', 'eval_batch_size', 'cache', 'progress_bar',
                  'tta', 'predict_images')
DATA_FIELDS = ('dataset', 'data_source', 'data_dir', 'skip_corrupt', 'sample')
TOP_K = 5
# File names travel to the devices as fixed-width bytes, so every process gathers them in
# the same order as the predictions (see `_gather`).
MAX_FILE_NAME_BYTES = 256


@dataclasses.dataclass
class RestoredModel:
  """A workdir's model with its `best/` variables, ready to predict.

  Attributes:
    name: how messages and CSV columns call it (a member name, or the workdir).
    workdir: the training workdir.
    config: the workdir's saved config with the runtime and data fields resolved.
    dataset: the dataset it predicts on.
    info: `dataset.info`.
    model: the VGG module built from `config.model`.
    variables: params and BatchNorm statistics of the best epoch, replicated.
    best_epoch: the epoch the `best/` checkpoint was saved after.
  """
  name: str
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  dataset: pipeline.Dataset
  info: pipeline.DatasetInfo
  model: models.VGG
  variables: Any
  best_epoch: int


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
  """
  split: str
  file_names: np.ndarray
  labels: np.ndarray
  log_probs: np.ndarray
  images: np.ndarray
  image_names: np.ndarray

  @property
  def probabilities(self) -> np.ndarray:
    return np.exp(self.log_probs)

  @property
  def predictions(self) -> np.ndarray:
    return np.argmax(self.log_probs, axis=-1)


# --- Configs and restoring ----------------------------------------------------------------


def names_data(config: ml_collections.ConfigDict) -> bool:
  """Whether a config points at data of its own (a source, or the generated sample)."""
  return bool(config.data_source) or bool(config.sample.enabled)


def resolve_config(saved: ml_collections.ConfigDict, runtime: ml_collections.ConfigDict,
                   data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A saved config with the runtime fields of `runtime` and the data section of `data`."""
  resolved = ml_collections.ConfigDict(saved.to_dict())
  for field in RUNTIME_FIELDS:
    if field in runtime:  # Configs written before a field existed lack it.
      resolved[field] = runtime[field]
  for field in DATA_FIELDS:
    value = data[field]
    resolved[field] = (ml_collections.ConfigDict(value.to_dict())
                       if isinstance(value, ml_collections.ConfigDict) else value)
  return resolved


def load_workdir_config(workdir: str | os.PathLike, name: str) -> ml_collections.ConfigDict:
  """The config saved in a training workdir; a missing workdir or `best/` is an error.

  Args:
    workdir: a training workdir.
    name: what the error messages call it (e.g. "member '13'").

  Raises:
    FileNotFoundError: the workdir, its `config.json` or its `best/` checkpoint is missing.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f'{name}: workdir {workdir} does not exist; train it first '
                            f'(python main.py --config=... --workdir={workdir}).')
  if not (workdir / 'config.json').exists():
    raise FileNotFoundError(f'{name}: {workdir} holds no config.json; it is not a training '
                            'workdir.')
  if not checkpointing.has_best_checkpoint(workdir):
    raise FileNotFoundError(f'{name}: {workdir} holds no best/ checkpoint; train it for at '
                            'least one epoch first.')
  return configuration.load_saved_config(workdir)


def _abstract_variables(model: models.VGG, image_size: int, mesh) -> Any:
  """Shapes, dtypes and (replicated) shardings of the model's variables."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)),
      shapes)


def check_same_classes(name: str, trained: pipeline.DatasetInfo,
                       current: pipeline.DatasetInfo) -> None:
  """Refuses a model trained on other classes (in another order) than the data's."""
  if tuple(trained.label_names) != tuple(current.label_names):
    raise configuration.ConfigError(
        f'{name} was trained on {trained.num_classes} other classes than the '
        f'{current.num_classes} of the data it is asked to predict (label names differ); '
        'use members trained on the same dataset.')


def _trained_info(name: str, saved: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                  info: pipeline.DatasetInfo) -> pipeline.DatasetInfo | None:
  """The dataset a model was trained on, or None when it cannot be read here."""
  saved_dict, data_dict = configuration.config_to_dict(saved), configuration.config_to_dict(data)
  if all(saved_dict.get(f) == data_dict.get(f) for f in DATA_FIELDS):
    return info
  if not names_data(saved):
    return None  # Trained on the official download: never download it just to compare.
  try:
    return pipeline.get_dataset_info(saved)
  except (pipeline.DataError, OSError) as error:
    # The data moved: the restore still refuses a different number of classes.
    logging.warning('%s: cannot read the data it was trained on (%s); checking the number '
                    'of classes only.', name, error)
    return None


def restore_model(name: str, workdir: str | os.PathLike, *,
                  runtime: ml_collections.ConfigDict,
                  data: ml_collections.ConfigDict | None = None,
                  mesh=None, dataset: pipeline.Dataset | None = None) -> RestoredModel:
  """Rebuilds a workdir's model from its saved config and restores its `best/` variables.

  Args:
    name: what messages call it.
    workdir: the training workdir.
    runtime: the config whose `RUNTIME_FIELDS` apply (the command line's).
    data: the config whose data section applies; None for the workdir's own.
    mesh: the device mesh; default all devices.
    dataset: the opened data of `data`'s data section (shared by ensemble members); None
      opens it.

  Returns:
    The restored model.

  Raises:
    FileNotFoundError: no such workdir or no `best/` checkpoint.
    ConfigError: a bad runtime field, or the model was trained on other classes than the
      data's.
  """
  saved = load_workdir_config(workdir, name)
  config = resolve_config(saved, runtime, data if data is not None else saved)
  configuration.validate_config(config)  # E.g. an eval_batch_size the devices cannot split.
  mesh = mesh or sharding.create_mesh()
  dataset = pipeline.open_dataset(config) if dataset is None else dataset
  info = dataset.info
  trained = _trained_info(name, saved, config, info)
  if trained is not None:
    check_same_classes(name, trained, info)
  model = models.create_model(config.model, num_classes=info.num_classes, dtype=config.dtype)
  abstract = _abstract_variables(model, config.image_size, mesh)
  try:
    variables, loop = checkpointing.restore_best_variables(workdir, abstract)
  except ValueError as error:
    raise configuration.ConfigError(
        f'{name}: the best/ checkpoint of {workdir} does not fit its config.json on a '
        f'dataset of {info.num_classes} classes ({str(error).split(". ")[0]}).') from error
  best_epoch = int(loop.get('early_stopping', {}).get('best_epoch', loop.get('epoch', 0)))
  return RestoredModel(name=name, workdir=pathlib.Path(workdir), config=config,
                       dataset=dataset, info=info,
                       model=model, variables=variables, best_epoch=best_epoch)


# --- Predicting a split -------------------------------------------------------------------


def create_predict_step(restored: RestoredModel, mesh) -> Callable:
  """A jitted `(variables, images) -> log_probs` for a model, batch sharded over `data`.

  With `config.tta == 'flip'` the log-probabilities are those of the mean of the softmax of
  each image and of its mirror image.
  """
  config = restored.config

  def predict_step(variables, images):
    return steps.infer_log_probs(restored.model.apply, variables, images,
                                 image_size=config.image_size, dtype=jnp.dtype(config.dtype),
                                 tta=config.get('tta', 'none'))

  batch_sharding = sharding.data_sharding(mesh)
  return jax.jit(predict_step, in_shardings=(sharding.replicated(mesh), batch_sharding),
                 out_shardings=batch_sharding)


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


def predict_split(restored: RestoredModel, split: str, *, mesh=None,
                  keep_images: int = 0) -> SplitPredictions:
  """Log-probabilities of a model for every image of a split.

  Args:
    restored: from `restore_model`.
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
  step = create_predict_step(restored, mesh)
  parts, images, image_names = [], [], []
  for batch in restored.dataset.eval_batches(config, split):
    global_batch = sharding.to_global_batch(batch, batch_sharding, keys=('image',))
    log_probs = step(restored.variables, global_batch['image'])
    rows = _gather({'label': batch['label'], 'mask': batch['mask'],
                    'name': _encode_names(batch['file_name'])}, batch_sharding)
    rows['log_probs'] = np.asarray(multihost_utils.process_allgather(log_probs, tiled=True))
    parts.append({k: v[rows['mask']] for k, v in rows.items()})
    if sum(map(len, images)) < keep_images:
      images.append(batch['image'][batch['mask']])
      image_names.append(batch['file_name'][batch['mask']])
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
      image_names=kept_names)


def predict_array(restored: RestoredModel, images: np.ndarray, *, mesh=None) -> np.ndarray:
  """Log-probabilities of a model for uint8 images that every process holds.

  Args:
    restored: from `restore_model`.
    images: (n, H, W, C) uint8, the same array on every process.
    mesh: the device mesh; default all devices.

  Returns:
    (n, num_classes) float32 log-probabilities, in the order of `images`.
  """
  mesh = mesh or sharding.create_mesh()
  batch_sharding = sharding.data_sharding(mesh)
  step = create_predict_step(restored, mesh)
  local = pipeline.local_batch_size(restored.config.eval_batch_size, 'eval_batch_size')
  global_size = local * jax.process_count()
  num_batches = -(-len(images) // global_size)
  # The last batch is padded by repeating images from the start (dropped after): every batch
  # has the compiled shape.
  index = np.arange(num_batches * global_size) % len(images)
  log_probs = np.zeros((len(images), restored.info.num_classes), np.float32)
  for start in range(0, len(index), global_size):
    mine = index[start:start + global_size][jax.process_index() * local:][:local]
    position = np.arange(start, start + global_size)[jax.process_index() * local:][:local]
    batch = jax.make_array_from_process_local_data(batch_sharding, images[mine])
    rows = _gather({'position': position.astype(np.int32)}, batch_sharding)
    result = np.asarray(multihost_utils.process_allgather(step(restored.variables, batch),
                                                          tiled=True))
    real = rows['position'] < len(images)
    log_probs[rows['position'][real]] = result[real]
  return log_probs


def summarize(predictions: SplitPredictions) -> dict[str, float | int]:
  """Loss, top-1 and top-5 accuracy of labelled predictions, as training computes them."""
  labels = predictions.labels
  if (labels < 0).any():
    raise pipeline.DataError(f'split {predictions.split!r} is unlabelled: it cannot be '
                             'evaluated; choose a labelled eval_split.')
  log_probs = predictions.log_probs
  loss = -np.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  top1 = np.asarray(vgg_metrics.top_k_correct(log_probs, labels, 1))
  top5 = np.asarray(vgg_metrics.top_k_correct(log_probs, labels, TOP_K))
  return {'loss': float(np.mean(loss, dtype=np.float64)),
          'accuracy': float(np.mean(top1, dtype=np.float64)),
          'top5_accuracy': float(np.mean(top5, dtype=np.float64)),
          'num_images': int(len(labels))}


# --- Writing results ----------------------------------------------------------------------


def short_words(words: str) -> str:
  """The first name of a `words.txt` entry: 'goldfish, Carassius auratus' -> 'goldfish'."""
  return words.split(',')[0].strip()


# --- The modes of main.py -----------------------------------------------------------------


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`--mode=evaluate`: the `best/` checkpoint on `config.eval_split`.

  Prints loss, top-1 and top-5 accuracy and writes them, with the `tta` used, to
  `<workdir>/eval_results.json`; writes `per_class_accuracy.csv` and `plots/confusion.png`
  (see `vgg_flax.per_class`).

  Args:
    config: the command line's config (see the module docstring for what it changes).
    workdir: a training workdir.

  Returns:
    The results written to `eval_results.json`.
  """
  restored = restore_model(str(workdir), workdir, runtime=config,
                           data=config if names_data(config) else None)
  split, tta = restored.config.eval_split, restored.config.get('tta', 'none')
  predictions = predict_split(restored, split)
  results = {'workdir': str(workdir), 'split': split, 'best_epoch': restored.best_epoch,
             'tta': tta, **summarize(predictions)}
  print(f'{workdir} (best epoch {restored.best_epoch}) on {split}: loss {results["loss"]:.4f}, '
        f'top-1 {results["accuracy"]:.4f}, top-5 {results["top5_accuracy"]:.4f} '
        f'({results["num_images"]} images, tta {tta})')
  if jax.process_index() == 0:
    info = restored.info
    per_class.write_per_class_results(workdir, predictions.labels, predictions.predictions,
                                      info.label_names, info.class_names)
    reporting.write_json(pathlib.Path(workdir) / 'eval_results.json', results)
  return results


PREDICTION_COLUMNS = ('images', 'class_index', 'wnid', 'class_words', 'probability',
                      'top5_indices')


def prediction_rows(predictions: SplitPredictions, info: pipeline.DatasetInfo) -> list[list]:
  """One `PREDICTION_COLUMNS` row per image."""
  return _rows(predictions.file_names, predictions.probabilities, info)


def _rows(names, probabilities: np.ndarray, info: pipeline.DatasetInfo) -> list[list]:
  """Name, top-1 class (index, wnid, words), its probability and the top-5 indices."""
  top = np.argsort(-probabilities, axis=-1, kind='stable')[:, :TOP_K]
  rows = []
  for name, probs, best in zip(names, probabilities, top):
    rows.append([name, int(best[0]), info.label_names[best[0]], info.class_names[best[0]],
                 f'{probs[best[0]]:.6f}', ' '.join(str(int(i)) for i in best)])
  return rows


def predict_workdir(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """`--mode=predict`: the `best/` checkpoint on `config.predict_split`.

  With `config.predict_images` set, on those images instead (see `predict_own_images`).

  Writes `<workdir>/test_predictions.csv` (whatever the split), one row per image in
  file-name order: `images, class_index, wnid, class_words, probability, top5_indices`
  (space-separated, most probable first).

  Args:
    config: the command line's config (see the module docstring for what it changes).
    workdir: a training workdir.

  Returns:
    The path of the CSV.
  """
  restored = restore_model(str(workdir), workdir, runtime=config,
                           data=config if names_data(config) else None)
  if restored.config.get('predict_images'):
    return predict_own_images(restored, skip_corrupt=bool(config.skip_corrupt))
  predictions = predict_split(restored, restored.config.predict_split)
  path = pathlib.Path(workdir) / 'test_predictions.csv'
  if jax.process_index() == 0:
    reporting.write_csv(path, PREDICTION_COLUMNS, prediction_rows(predictions, restored.info))
  print(f'{len(predictions.file_names)} predictions on {predictions.split} -> {path}')
  return path


IMAGE_PREDICTION_COLUMNS = ('path', *PREDICTION_COLUMNS[1:])
IMAGE_PREDICTIONS_FILE = 'image_predictions.csv'
# Up to this many images, each one's top-1 is printed.
MAX_PRINTED_IMAGES = 20


def stored_image_shape(restored: RestoredModel) -> tuple[int, int, int]:
  """The shape the dataset stores images in: own images are brought to it."""
  shape = tuple(restored.info.image_shape)
  if None in shape:  # Variable-size datasets: straight to the model's size.
    size = restored.config.image_size
    return size, size, shape[-1] or 3
  return shape


def predict_own_images(restored: RestoredModel, *, skip_corrupt: bool = False,
                       mesh=None) -> pathlib.Path:
  """Predicts the images `restored.config.predict_images` names.

  Writes `<workdir>/image_predictions.csv`, one row per image in file-name order: `path,
  class_index, wnid, class_words, probability, top5_indices`, and prints each image's top-1
  when there are at most `MAX_PRINTED_IMAGES`.

  Args:
    restored: from `restore_model`.
    skip_corrupt: skip unreadable files (counted in the message) instead of failing.
    mesh: the device mesh; default all devices.

  Returns:
    The path of the CSV.

  Raises:
    DataError: nothing matches, or a file cannot be read (without `skip_corrupt`).
  """
  paths = own_images.find_images(restored.config.predict_images)
  images, read, skipped = own_images.load_images(paths, stored_image_shape(restored),
                                                 skip_corrupt=skip_corrupt)
  probabilities = np.exp(predict_array(restored, images, mesh=mesh))
  rows = _rows(read, probabilities, restored.info)
  path = restored.workdir / IMAGE_PREDICTIONS_FILE
  if jax.process_index() == 0:
    reporting.write_csv(path, IMAGE_PREDICTION_COLUMNS, rows)
  if len(rows) <= MAX_PRINTED_IMAGES:
    for row in rows:
      print(f'{row[0]}: {short_words(row[3])} ({row[2]}, class {row[1]}, p={row[4]})')
  skipped_note = (f'; skipped {len(skipped)} unreadable: {", ".join(skipped[:3])}'
                  f'{" ..." if len(skipped) > 3 else ""}' if skipped else '')
  print(f'{len(rows)} predictions (tta {restored.config.get("tta", "none")}) -> {path}'
        f'{skipped_note}')
  return path


def predict_ensemble(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`--mode=predict_ensemble`; see `vgg_flax.ensemble.predict_ensemble`."""
  from vgg_flax import ensemble  # pylint: disable=g-import-not-at-top (ensemble imports us)
  return ensemble.predict_ensemble(config, workdir)
