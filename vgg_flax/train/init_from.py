"""Starting a run from other weights: `config.init_from` and `config.init_head`.

`init_from` names either a PyTorch state_dict file (the original project's layout or
torchvision's, read and converted by `vgg_flax.interop.torch_weights`) or a workdir, whose `best/`
checkpoint is used. The run starts from those weights with a fresh optimizer state at step 0.
The last dense layer (`fc3`, the head) is newly initialised when the number of classes
differs, or always with `init_head=False`; every other layer must fit the config's model.

A workdir that already holds checkpoints is resumed instead; `train.loop` decides that.
"""

import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from vgg_flax.core import models
from vgg_flax.errors import ConfigError
from vgg_flax.interop import torch_weights
from vgg_flax.workdir import checkpoints
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

HEAD = 'fc3'


def load_variables(source: str, model: models.VGG) -> tuple[dict, int]:
  """Reads the variables of `source` for `model`, whatever the head's number of classes.

  Args:
    source: a PyTorch state_dict file or a workdir with a `best/` checkpoint.
    model: the model to fill; its backbone (all but `fc3`) must fit the weights.

  Returns:
    ({'params': ..., 'batch_stats': ...} of numpy arrays, the source's number of classes).

  Raises:
    ConfigError: one line naming `init_from` and what does not fit.
  """
  path = pathlib.Path(source)
  if path.is_dir():
    return _load_workdir(path, model)
  if path.is_file():
    return _load_state_dict(path, model)
  raise ConfigError(
      f'init_from={source!r} does not exist; give a PyTorch state_dict file or a workdir '
      f'with a best/ checkpoint.')


def _load_state_dict(path: pathlib.Path, model: models.VGG) -> tuple[dict, int]:
  """Converts a state_dict file, for a head of its own size."""
  try:
    state_dict = torch_weights.load_state_dict(os.fspath(path))
    num_classes = torch_weights.num_classes_of(state_dict)
    variables = torch_weights.from_torch_state_dict(state_dict,
                                                    model.clone(num_classes=num_classes))
  except ModuleNotFoundError as error:
    raise ConfigError(
        f'init_from={os.fspath(path)!r} is a PyTorch file; reading it needs torch '
        f'(pip install -r requirements-dev.txt).') from error
  except ValueError as error:
    raise ConfigError(f'init_from={os.fspath(path)!r}: {error}') from error
  return variables, num_classes


def _load_workdir(path: pathlib.Path, model: models.VGG) -> tuple[dict, int]:
  """The `best/` variables of a workdir, checked against the model but for the head."""
  if not checkpoints.has_best_checkpoint(path):
    raise ConfigError(
        f'init_from={os.fspath(path)!r} holds no best/ checkpoint; give a trained (or '
        f'converted) workdir or a PyTorch state_dict file.')
  # Restored as saved (no target shapes): the head may have any number of classes.
  variables, _ = checkpoints.restore_best_variables(path, None)
  variables = jax.tree.map(np.asarray, dict(variables))
  head = variables.get('params', {}).get(HEAD, {})
  if 'bias' not in head:
    raise ConfigError(
        f'init_from={os.fspath(path)!r}: its best/ checkpoint has no {HEAD} layer; it is not '
        f'a vgg_flax VGG.')
  num_classes = int(head['bias'].shape[0])
  _check_fits(variables, _expected_shapes(model.clone(num_classes=num_classes)), path, model)
  return variables, num_classes


def _expected_shapes(model: models.VGG) -> dict:
  side = models.MIN_IMAGE_SIZE
  images = jax.ShapeDtypeStruct((1, side, side, 3), np.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


# Model fields that decide the shapes of the backbone's variables.
_SHAPE_FIELDS = ('depth', 'conv1x1', 'batch_norm', 'width', 'hidden_units', 'pool_size')


def _flat_shapes(tree) -> dict[str, tuple[int, ...]]:
  return {'/'.join(str(getattr(k, 'key', k)) for k in keys): tuple(leaf.shape)
          for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _saved_network_differences(workdir: pathlib.Path, model: models.VGG) -> list[str]:
  """`model.<field>=<there> there, <here> here` for the shape fields of its config.json."""
  if not (workdir / files.CONFIG_FILE).is_file():
    return []
  saved = run_config.read_config(workdir).model.to_dict()
  normal = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v
  return [f'model.{field}={normal(saved[field])!r} there, {normal(getattr(model, field))!r} '
          f'here' for field in _SHAPE_FIELDS
          if normal(saved[field]) != normal(getattr(model, field))]


def _check_fits(variables: dict, expected: Any, path: pathlib.Path,
                model: models.VGG) -> None:
  """One-line ConfigError naming the network fields, or the first variable, that differ."""
  have, want = _flat_shapes(variables), _flat_shapes(expected)
  if have == want:
    return
  problems = _saved_network_differences(path, model)
  if not problems:
    module = lambda name: name.split('/')[1]
    if missing := sorted({module(n) for n in set(want) - set(have)}):
      problems.append(f'the model has {", ".join(missing)}, the checkpoint does not')
    if extra := sorted({module(n) for n in set(have) - set(want)}):
      problems.append(f'the checkpoint has {", ".join(extra)}, the model does not')
    problems += [f'{name} has shape {have[name]}, the model wants {want[name]}'
                 for name in sorted(set(have) & set(want)) if have[name] != want[name]][:1]
  raise ConfigError(
      f'init_from={os.fspath(path)!r} holds another network ({"; ".join(problems)}); the '
      f'config must give the same model.depth, conv1x1, batch_norm, width, hidden_units and '
      f'pool_size.')


def with_head(loaded: dict, fresh: dict, *, keep_head: bool) -> dict:
  """`loaded` with the head (`fc3`) taken from `fresh` unless `keep_head`.

  Args:
    loaded: variables from `load_variables`.
    fresh: newly initialised variables of the model being trained.
    keep_head: keep `loaded`'s head (its number of classes must be the model's).

  Returns:
    Variables with `fresh`'s tree structure.
  """
  params = dict(loaded['params'])
  if not keep_head:
    params[HEAD] = fresh['params'][HEAD]
  variables = {'params': params}
  if 'batch_stats' in fresh:
    variables['batch_stats'] = loaded['batch_stats']
  return variables


def _place(tree, shardings):
  """Numpy arrays onto the given (replicated) shardings, in every process."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda index: x[index]),
      jax.tree.map(np.asarray, tree), shardings)


def start_from(config: ml_collections.ConfigDict, model: models.VGG, state: Any,
               state_sharding: Any) -> Any:
  """The train state of a new run with the weights of `config.init_from`.

  Args:
    config: uses `init_from` and `init_head`.
    model: the model being trained.
    state: its freshly initialised `steps.TrainState` (the new head and the optimizer come
      from it).
    state_sharding: the state's shardings.

  Returns:
    `state` with the loaded params and BatchNorm statistics and the optimizer state
    initialised for them (its step and RNG unchanged: a fresh state's).

  Raises:
    ConfigError: `init_from` is missing or does not fit the model.
  """
  loaded, source_classes = load_variables(config.init_from, model)
  keep_head = config.init_head and source_classes == model.num_classes
  if not keep_head:
    logging.info('head re-initialised: %d -> %d classes%s', source_classes,
                 model.num_classes, '' if config.init_head
                 else ' (init_head=False)')
  fresh = {'params': state.params, 'batch_stats': state.batch_stats}
  if not state.batch_stats:
    del fresh['batch_stats']
  variables = with_head(loaded, jax.tree.map(np.asarray, fresh), keep_head=keep_head)
  params = _place(variables['params'], state_sharding.params)
  batch_stats = (_place(variables['batch_stats'], state_sharding.batch_stats)
                 if 'batch_stats' in variables else state.batch_stats)
  opt_state = jax.jit(state.tx.init, out_shardings=state_sharding.opt_state)(params)
  logging.info('Starting from the weights of %s (%s parameters); fresh optimizer state.',
               config.init_from, f'{models.count_params(params):,}')
  return state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
