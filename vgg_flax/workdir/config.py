"""A run's config: the checks it must pass, its `config.json`, and the migration of older ones.

Every user mistake becomes one `ConfigError` line that names the field, the value and what
would be right; `main.py` prints it and exits with status 2.

`config.json` carries `format_version`. `migrate` is the one place that knows older files:
it brings any of them to today's config, merged over `configs/default.py`, so no other
module asks whether a field exists.
"""

import json
import os
import pathlib
import re

from absl import logging
import jax
import ml_collections

from configs import default
from vgg_flax.core import conv
from vgg_flax.core import models
from vgg_flax.core import steps
from vgg_flax.errors import ConfigError
from vgg_flax.workdir import atomic
from vgg_flax.workdir import files

# The layout of `config.json` this code writes. 1: written before the key existed; it may
# lack any field added since (`cpu_conv_grad`, `init_from`, `init_head`,
# `model.bn_running_var`, `tta`, `predict_images`, `compilation_cache`,
# `compilation_cache_dir`, `grad_accum_steps`, `cache_max_gib`). 2: lacks the image folders'
# `val_fraction`, `split_seed` and Grad-CAM's `explain`, `explain_layer`. 3: every field.
FORMAT_VERSION = 3
FORMAT_KEY = 'format_version'

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'cosine')
DTYPES = ('float32', 'bfloat16')
POOL_TYPES = ('max', 'avg')
# Fields that define the network; a workdir trained with other values cannot be resumed.
MODEL_FIELDS = ('model', 'dataset')
# Model fields that change no variable: a workdir resumes with the current value (workdirs
# of format 1 trained with the 'biased' running variance before the field existed).
RESUMABLE_MODEL_FIELDS = ('model.bn_running_var',)


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _check_positive(config, *names: str) -> None:
  for name in names:
    value = config[name]
    _require(isinstance(value, (int, float)) and value > 0,
             f'{name}={value!r} must be a positive number.')


def _check_choice(value, name: str, choices) -> None:
  _require(value in choices, f'{name}={value!r} is not one of {", ".join(map(repr, choices))}.')


def _check_model(model: ml_collections.ConfigDict) -> None:
  _check_choice(model.depth, 'model.depth', sorted(models.STAGE_PLANS))
  _require(not model.conv1x1 or model.depth == 16,
           f'model.conv1x1=True is defined for model.depth=16 only (configuration C), '
           f'not {model.depth}.')
  _require(model.width >= 1, f'model.width={model.width} must be at least 1.')
  _require(model.hidden_units >= 1,
           f'model.hidden_units={model.hidden_units} must be at least 1.')
  _require(len(model.pool_size) == 2 and all(s >= 1 for s in model.pool_size),
           f'model.pool_size={tuple(model.pool_size)} must be two positive ints, e.g. (2, 2).')
  _check_choice(model.pool_type, 'model.pool_type', POOL_TYPES)
  _check_choice(model.bn_running_var, 'model.bn_running_var',
                models.RUNNING_VARIANCES)
  _require(0.0 <= model.dropout_rate < 1.0,
           f'model.dropout_rate={model.dropout_rate} must be in [0, 1).')


def _check_batches(config) -> None:
  devices, processes = jax.device_count(), jax.process_count()
  for name in ('batch_size', 'eval_batch_size'):
    value = config[name]
    _require(isinstance(value, int) and value > 0, f'{name}={value!r} must be a positive int.')
    _require(value % devices == 0,
             f'{name}={value} is not divisible by the {devices} devices; use a multiple '
             f'of {devices}.')
    _require(value % processes == 0,
             f'{name}={value} is not divisible by the {processes} processes.')


def _check_scale(config) -> None:
  """The compilation cache and gradient accumulation fields."""
  cache, folder = config.compilation_cache, config.compilation_cache_dir
  _require(isinstance(cache, bool), f'compilation_cache={cache!r} must be True or False.')
  _require(isinstance(folder, str),
           f"compilation_cache_dir={folder!r} must be a folder path or '' (beside the workdir).")
  accum, batch, devices = config.grad_accum_steps, config.batch_size, jax.device_count()
  _require(isinstance(accum, int) and accum >= 1,
           f'grad_accum_steps={accum!r} must be an int >= 1.')
  _require(batch % (accum * devices) == 0,
           f'batch_size={batch} must split into grad_accum_steps={accum} micro-batches of a '
           f'multiple of the {devices} devices; use a multiple of {accum * devices}.')


def _check_cache(config) -> None:
  cache = config.cache
  _require(cache is True or cache is False or cache == 'auto',
           f"cache={cache!r} is not one of True, False, 'auto'.")
  budget = config.cache_max_gib
  _require(isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0,
           f'cache_max_gib={budget!r} must be a positive number of GiB.')


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first field that cannot work.

  Args:
    config: a config built from `configs/default.py`.
  """
  _check_model(config.model)
  _check_batches(config)
  _check_cache(config)
  _check_positive(config, 'learning_rate', 'num_epochs', 'log_every_steps')
  _require(isinstance(config.num_epochs, int), f'num_epochs={config.num_epochs!r} must be an int.')
  _require(config.image_size >= models.MIN_IMAGE_SIZE,
           f'image_size={config.image_size} is too small for five 2x2 pools; use at least '
           f'{models.MIN_IMAGE_SIZE}.')
  _check_choice(config.optimizer, 'optimizer', OPTIMIZERS)
  _check_choice(config.schedule, 'schedule', SCHEDULES)
  _check_choice(config.dtype, 'dtype', DTYPES)
  _require(config.weight_decay >= 0, f'weight_decay={config.weight_decay} must be >= 0.')
  _require(0 <= config.label_smoothing < 1,
           f'label_smoothing={config.label_smoothing} must be in [0, 1).')
  _require(0 <= config.warmup_epochs < config.num_epochs,
           f'warmup_epochs={config.warmup_epochs} must be in [0, num_epochs='
           f'{config.num_epochs}).')
  _require(config.early_stopping.patience >= 1,
           f'early_stopping.patience={config.early_stopping.patience} must be at least 1.')
  _require(config.early_stopping.min_delta >= 0,
           f'early_stopping.min_delta={config.early_stopping.min_delta} must be >= 0.')
  _require(config.augment.crop_padding >= 0,
           f'augment.crop_padding={config.augment.crop_padding} must be >= 0.')
  _require(config.steps_per_epoch == -1 or config.steps_per_epoch >= 1,
           f'steps_per_epoch={config.steps_per_epoch} must be -1 (whole split) or positive.')
  _require(isinstance(config.max_checkpoints, int) and config.max_checkpoints >= 1,
           f'max_checkpoints={config.max_checkpoints!r} must be a positive int (2 by default).')
  _check_choice(config.cpu_conv_grad, 'cpu_conv_grad', conv.CONV_GRADS)
  _check_prediction(config)
  _check_image_folder(config)
  _check_scale(config)
  _check_init_from(config)


def _check_prediction(config) -> None:
  # (`predict_images` is a str by the ConfigDict's type; what it names is checked when read.)
  _check_choice(config.tta, 'tta', steps.TTA_MODES)
  _require(isinstance(config.explain, bool), f'explain={config.explain!r} must be True or False.')
  # (`explain_layer` names a block of the trained model: `modes.gradcam` checks it on restore.)


def _check_image_folder(config) -> None:
  """The hold-out of an image folder without val/ (`input_pipeline.image_folder`)."""
  fraction = config.val_fraction
  _require(isinstance(fraction, float) and 0 < fraction < 1,
           f'val_fraction={fraction!r} must be in (0, 1): the share of train/ held out.')
  _require(isinstance(config.split_seed, int) and not isinstance(config.split_seed, bool),
           f'split_seed={config.split_seed!r} must be an integer.')


def _check_init_from(config) -> None:
  """`init_from` is a path and `init_head` a bool (whether the path exists is checked only
  when a run starts from it: a resumed run or an evaluation never reads it)."""
  _require(isinstance(config.init_from, str),
           f'init_from={config.init_from!r} must be a path (a state_dict file or a workdir).')
  _require(isinstance(config.init_head, bool),
           f'init_head={config.init_head!r} must be True or False.')


def flatten_dict(tree: dict, prefix: str = '') -> dict:
  """Nested dicts to one level with dotted keys; sequences become lists."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten_dict(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, (list, tuple)) else value
  return flat


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON round-trip of the config (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def model_differences(saved: dict, current: dict) -> list[str]:
  """Human-readable `field: saved -> current` lines for the network-defining fields."""
  saved_flat = flatten_dict({k: saved[k] for k in MODEL_FIELDS})
  current_flat = flatten_dict({k: current[k] for k in MODEL_FIELDS})
  keys = sorted((set(saved_flat) | set(current_flat)) - set(RESUMABLE_MODEL_FIELDS))
  return [f'{key}: {saved_flat.get(key)!r} in the workdir, {current_flat.get(key)!r} now'
          for key in keys if saved_flat.get(key) != current_flat.get(key)]


def check_workdir_compatible(config: ml_collections.ConfigDict,
                             workdir: str | pathlib.Path) -> None:
  """Refuses to train on in a workdir whose saved config has another model or dataset, or
  to resume its checkpoint with another `batch_size`.

  A resumed run continues the saved step count, learning-rate schedule and data order, all
  counted in batches of the saved size: another size would silently change them. (Only
  `grad_accum_steps` may change: it splits the same batch into micro-batches.)
  """
  if not (pathlib.Path(workdir) / files.CONFIG_FILE).exists():
    return
  saved = read_config(workdir)
  differences = model_differences(config_to_dict(saved), config_to_dict(config))
  _require(not differences,
           f'{workdir} holds a run with another model config ({"; ".join(differences)}); '
           f'use a new --workdir or the same model settings.')
  _require(saved.batch_size == config.batch_size or not _has_checkpoint(workdir),
           f'{workdir} resumes a run trained with batch_size={saved.batch_size}, not '
           f'{config.batch_size}: use --config.batch_size={saved.batch_size} (grad_accum_steps '
           f'to fit it in less memory) or a new --workdir.')


def _has_checkpoint(workdir: str | pathlib.Path) -> bool:
  """Whether the workdir holds a finished epoch to resume (`checkpoints/<epoch>/`)."""
  folder = pathlib.Path(workdir) / files.LATEST_DIR
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


# --- config.json --------------------------------------------------------------------------


def _merged(base: dict, saved: dict) -> dict:
  """`saved` over `base`, section by section (a field `saved` lacks keeps `base`'s value)."""
  merged = dict(base)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      merged[key] = _merged(base[key], value)
    else:
      merged[key] = value
  return merged


# Fields whose value may take another type than their default's.
_UNION_TYPES = {'cache': (bool, str)}
# What a saved config must hold: every format has written the model it trained.
_REQUIRED_SECTIONS = ('model',)
# A TFDS dataset name, optionally with a config and version (`name/config:1.0.0`).
_DATASET_NAME = re.compile(r'^[a-z][a-z0-9_]*(/[a-z0-9_.]+)?(:[0-9.]+)?$')


def _kind(value) -> str:
  if isinstance(value, bool):
    return 'True or False'
  if isinstance(value, dict):
    return 'a section of fields'
  if isinstance(value, (list, tuple)):
    return 'a list'
  return {int: 'an int', float: 'a number', str: 'a string'}.get(type(value), 'a value')


def _fits(value, default, name: str) -> bool:
  """Whether a saved value has the type its field takes (by the default's type)."""
  if name in _UNION_TYPES:
    return isinstance(value, _UNION_TYPES[name])
  if isinstance(default, bool) or default is None:
    return default is None or isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, (list, tuple)):
    return isinstance(value, (list, tuple))
  if isinstance(default, dict):
    return isinstance(value, dict)
  return isinstance(value, type(default))


def _check_saved_types(saved: dict, defaults: dict, where: str, prefix: str = '') -> None:
  """Refuses a saved field whose value is not of its field's type (fields today's code no
  longer knows are left alone: migration merges them over the defaults)."""
  for key, value in saved.items():
    name = f'{prefix}{key}'
    if key not in defaults:
      continue
    default = defaults[key]
    _require(_fits(value, default, name),
             f'{where}: field {name!r} holds {value!r}; expected {_kind(default)} like '
             f'{default!r}. Was the file edited? Restore it from the run that trained.')
    if isinstance(default, dict):
      _check_saved_types(value, default, where, f'{name}.')


def migrate(saved: dict, where: str = files.CONFIG_FILE) -> ml_collections.ConfigDict:
  """The content of any `config.json` as today's config, checked like a command line's.

  Every format so far only added fields, each with a default that reproduces what the code
  did before the field existed, so an older file is merged over `configs/default.py`.

  Args:
    saved: the parsed JSON, of any `format_version` up to `FORMAT_VERSION`.
    where: the file, for messages.

  Raises:
    ConfigError: a file written by a newer version of this project, or one whose fields
      are missing, of the wrong type or out of range (one line naming the file and field).
  """
  saved = dict(saved)
  version = saved.pop(FORMAT_KEY, 1)
  _require(isinstance(version, int) and not isinstance(version, bool) and version >= 1,
           f'{where}: field {FORMAT_KEY!r} holds {version!r}; expected an int from 1.')
  if version > FORMAT_VERSION:
    raise ConfigError(f'{where} has format_version {version}; this code reads up to '
                      f'{FORMAT_VERSION}: update the project.')
  for section in _REQUIRED_SECTIONS:
    _require(section in saved, f'{where}: no field {section!r}; a training run always writes '
             'it. Was the file edited? Restore it from the run that trained.')
  defaults = default.get_config().to_dict()
  _check_saved_types(saved, defaults, where)
  config = ml_collections.ConfigDict(_merged(defaults, saved))
  try:
    _check_model(config.model)
  except ConfigError as error:
    raise ConfigError(f'{where}: {error}') from None
  return config


def check_saved_data(config: ml_collections.ConfigDict, where: str | os.PathLike) -> None:
  """Checks the data section of a workdir's saved config before a run reads data by it.

  Used when the command line names no data: then the workdir's own `dataset`, `data_source`
  and `data_dir` are used, and a copied workdir must not decide where data is read from or
  written to. The source must exist, `data_dir` must be an existing folder (nothing is
  created where the file says), and the dataset a plain TFDS name. The log says which data.

  Raises:
    ConfigError: one line naming the file, the field and the value.
  """
  dataset, source, data_dir = config.dataset, config.data_source, config.data_dir
  _require(bool(_DATASET_NAME.match(dataset)),
           f'{where}: dataset={dataset!r} is not a dataset name; give --config.dataset and '
           '--config.data_source on the command line.')
  _require(not source or pathlib.Path(source).expanduser().exists(),
           f'{where}: data_source={source!r} does not exist here; the command line names no '
           'data, so the workdir\'s would be used: give --config.data_source (and '
           '--config.data_dir) for this machine.')
  _require(not data_dir or pathlib.Path(data_dir).expanduser().is_dir(),
           f'{where}: data_dir={data_dir!r} is not an existing folder; the command line names '
           'no data, and no folder is created where a saved config says: give '
           '--config.data_dir (and --config.data_source) for this machine.')
  logging.info('Using data from %s (the command line names none): dataset=%s, '
               'data_source=%s, data_dir=%s.', where, dataset, source, data_dir)


def write_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
  """Writes `<workdir>/config.json` atomically (the caller decides which process writes)."""
  atomic.write_json(pathlib.Path(workdir) / files.CONFIG_FILE,
                    {FORMAT_KEY: FORMAT_VERSION, **config_to_dict(config)})


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config saved in a workdir's `config.json`, checked and brought to today's format.

  Raises:
    ConfigError: the workdir holds no `config.json`, or it cannot be read, is not a JSON
      object, or holds a field of the wrong type or value (one line naming file and field).
  """
  path = pathlib.Path(workdir) / files.CONFIG_FILE
  if not path.exists():
    raise ConfigError(f'{path} does not exist: {workdir} is not a vgg_flax workdir.')
  try:
    saved = json.loads(path.read_text(encoding='utf-8'))
  except json.JSONDecodeError as error:
    raise ConfigError(f'{path}: not valid JSON ({error.msg} at line {error.lineno}, column '
                      f'{error.colno}); expected the config a training run wrote.') from None
  except (OSError, UnicodeDecodeError) as error:
    raise ConfigError(f'{path}: cannot be read ({error}).') from None
  _require(isinstance(saved, dict), f'{path}: holds a JSON {type(saved).__name__}, not a JSON '
           'object of config fields; expected the config a training run wrote.')
  return migrate(saved, str(path))
