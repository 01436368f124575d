"""Restoring a workdir's `best/` model with the config it was trained with.

A training workdir is rebuilt from the config saved in it (`config.json`), so a model is
restored with exactly the depth, width, image size and dtype it was trained with. The config
given on the command line contributes only what does not change the model:

  * the splits and the batch size of evaluation (`eval_split`, `predict_split`,
    `eval_batch_size`, `cache`, `progress_bar`), test-time augmentation (`tta`), the
    user's own images (`predict_images`) and Grad-CAM (`explain`, `explain_layer`);
  * the whole data section (`dataset`, `data_source`, `data_dir`, `skip_corrupt`, `sample`)
    when it names data (`data_source` set or `sample.enabled`), e.g. after the data moved;
    otherwise the workdir's own data section is used. An image folder's hold-out
    (`val_fraction`, `split_seed`) is always the workdir's: the validation images stay those
    training held out.

The latest checkpoint (`checkpoints/`, for resuming) is restored by the training loop
(`vgg_flax.workdir.checkpoints.WorkdirCheckpoints`); `best/` is read here, by every mode after it.
"""

import dataclasses
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from input_pipeline import pipeline
from vgg_flax.core import models
from vgg_flax.core import sharding
from vgg_flax.errors import ConfigError
from vgg_flax.workdir import checkpoints
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

# Fields of the command-line config that never change the model (see the module docstring).
RUNTIME_FIELDS = ('eval_split', 'predict_split', 'eval_batch_size', 'cache', 'progress_bar',
                  'tta', 'predict_images', 'explain', 'explain_layer')
DATA_FIELDS = ('dataset', 'data_source', 'data_dir', 'skip_corrupt', 'sample')


def load_workdir_config(workdir: str | os.PathLike, name: str) -> ml_collections.ConfigDict:
  """The config saved in a training workdir; a missing workdir or `best/` is an error.

  Args:
    workdir: a training workdir.
    name: what the error messages call it (e.g. "member '13'").

  Raises:
    FileNotFoundError: the workdir, its `config.json` or its `best/` checkpoint is missing.
  """
  files.require_trained(workdir, name, files.CONFIG_FILE)
  if not checkpoints.has_best_checkpoint(workdir):
    raise FileNotFoundError(f'{name}: {workdir} holds no {files.BEST_DIR}/ checkpoint; train '
                            'it for at least one epoch first.')
  return run_config.read_config(workdir)


# --- The config a restored model runs with ------------------------------------------------


def names_data(config: ml_collections.ConfigDict) -> bool:
  """Whether a config points at data of its own (a source, or the generated sample)."""
  return bool(config.data_source) or bool(config.sample.enabled)


def resolve_config(saved: ml_collections.ConfigDict, runtime: ml_collections.ConfigDict,
                   data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A saved config with the runtime fields of `runtime` and the data section of `data`."""
  # Merged as plain dicts: a ConfigDict would keep the saved value's type, and refuse e.g.
  # `cache=False` over a saved 'auto'.
  resolved = saved.to_dict()
  for field in RUNTIME_FIELDS:
    resolved[field] = runtime[field]
  for field in DATA_FIELDS:
    value = data[field]
    resolved[field] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
  return ml_collections.ConfigDict(resolved)


# --- Restoring best/ ----------------------------------------------------------------------


@dataclasses.dataclass
class RestoredModel:
  """A workdir's model with its `best/` variables, ready to predict.

  Attributes:
    name: how messages and CSV columns call it (a member name, or the workdir).
    workdir: the training workdir.
    config: the workdir's saved config with the runtime and data fields resolved.
    dataset: the data it predicts on (`pipeline.Dataset`, shared by ensemble members).
    model: the VGG module built from `config.model`.
    variables: params and BatchNorm statistics of the best epoch, replicated.
    best_epoch: the epoch the `best/` checkpoint was saved after.
  """
  name: str
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  dataset: pipeline.Dataset
  model: models.VGG
  variables: Any
  best_epoch: int

  @property
  def info(self) -> pipeline.DatasetInfo:
    return self.dataset.info


def abstract_variables(model: models.VGG, image_size: int, mesh) -> Any:
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
    raise ConfigError(
        f'{name} was trained on {trained.num_classes} other classes than the '
        f'{current.num_classes} of the data it is asked to predict (label names differ); '
        'use members trained on the same dataset.')


def _trained_info(name: str, saved: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                  info: pipeline.DatasetInfo) -> pipeline.DatasetInfo | None:
  """The dataset a model was trained on, or None when it cannot be read here."""
  saved_dict, data_dict = run_config.config_to_dict(saved), run_config.config_to_dict(data)
  if all(saved_dict[f] == data_dict[f] for f in DATA_FIELDS):
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
    dataset: the opened data of `data`'s data section (ensemble members share one); None
      opens it.

  Returns:
    The restored model.

  Raises:
    FileNotFoundError: no such workdir or no `best/` checkpoint.
    ConfigError: a bad runtime field, or the model was trained on other classes than the
      data's.
  """
  saved = load_workdir_config(workdir, name)
  if data is None:  # The workdir's own data: checked like a command line's.
    run_config.check_saved_data(saved, pathlib.Path(workdir) / files.CONFIG_FILE)
  config = resolve_config(saved, runtime, data if data is not None else saved)
  run_config.validate_config(config)  # E.g. an eval_batch_size the devices cannot split.
  mesh = mesh or sharding.create_mesh()
  dataset = pipeline.open_dataset(config) if dataset is None else dataset
  info = dataset.info
  trained = _trained_info(name, saved, config, info)
  if trained is not None:
    check_same_classes(name, trained, info)
  model = models.create_model(config.model, num_classes=info.num_classes, dtype=config.dtype)
  abstract = abstract_variables(model, config.image_size, mesh)
  try:
    variables, loop = checkpoints.restore_best_variables(workdir, abstract)
  except checkpoints.MismatchError as error:
    raise ConfigError(
        f'{name}: the {files.BEST_DIR}/ checkpoint of {workdir} does not fit its '
        f'{files.CONFIG_FILE} on a dataset of {info.num_classes} classes ({error}).') from error
  best_epoch = checkpoints.best_epoch_of(loop)
  return RestoredModel(name=name, workdir=pathlib.Path(workdir), config=config,
                       dataset=dataset, model=model, variables=variables, best_epoch=best_epoch)
