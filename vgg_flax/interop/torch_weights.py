"""PyTorch state_dicts <-> Flax variables of `core.models.VGG`, and their files.

Two layouts of names are understood and written:

* the original project's: `layers.<i>.conv.{weight,bias}`, `layers.<i>.bNorm.{weight,bias,
  running_mean,running_var}` (conv blocks interleaved with pooling layers), then
  `fc_layers.<j>.{weight,bias}` (three Linear layers with ReLUs between);
* torchvision's VGG: `features.<n>.{weight,bias}` (4-D conv weights; BatchNorm has 1-D
  weights and running statistics) and `classifier.<n>.{weight,bias}`.

Layers are matched by order, not by index, because only the order is certain: the k-th
convolution becomes the k-th conv of the Flax model, the k-th Linear becomes `fc{k}`.

Converting a file into a workdir, and a workdir's model into a file, are the commands of
`interop.commands` (`python -m vgg_flax.convert`, `python -m vgg_flax.export`).
"""

import collections
import dataclasses
import pathlib
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vgg_flax.core import models

# Number of conv layers -> VGG depth (each depth has 3 dense layers on top).
_DEPTH_OF_NUM_CONVS = {sum(plan): depth for depth, plan in models.STAGE_PLANS.items()}
_BN_KEYS = {'weight': 'scale', 'bias': 'bias'}
_BN_STATS_KEYS = {'running_mean': 'mean', 'running_var': 'var'}
_IGNORED_SUFFIXES = ('num_batches_tracked',)
# `prefix.<index>.[submodule.]<leaf>`; the submodule is `conv`/`bNorm` in the original.
# The layouts a state_dict is written in (`to_torch_state_dict`).
LAYOUTS = ('original', 'torchvision')
_KEY_RE = re.compile(r'^(layers|fc_layers|features|classifier)\.(\d+)\.(?:(\w+)\.)?(\w+)$')


@dataclasses.dataclass
class _TorchLayer:
  """One torch module's tensors, in state_dict order."""
  kind: str  # 'conv', 'bn' or 'linear'.
  prefix: str  # Module name, e.g. 'layers.3.conv' or 'features.0'.
  tensors: dict[str, np.ndarray]


def to_numpy(value: Any) -> np.ndarray:
  """A torch tensor (by duck typing, so torch need not be imported) or array as numpy."""
  if hasattr(value, 'detach'):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # numpy has no bfloat16.
    value = value.numpy()
  return np.asarray(value)


def _strip_data_parallel(name: str) -> str:
  return name[len('module.'):] if name.startswith('module.') else name


def _parse_layers(state_dict: Mapping[str, Any]):
  """Groups a state_dict into ordered torch layers.

  Returns:
    (layers, unused): the `_TorchLayer`s in network order, and the keys that fit no layer.
  """
  modules = collections.defaultdict(dict)
  unused = []
  for key, value in state_dict.items():
    match = _KEY_RE.match(_strip_data_parallel(key))
    if not match:
      unused.append(key)
      continue
    section, index, submodule, leaf = match.groups()
    if leaf in _IGNORED_SUFFIXES:
      continue
    modules[(section, int(index), submodule or '')][leaf] = to_numpy(value)
  layers = []
  for (section, index, submodule), tensors in sorted(modules.items(),
                                                     key=lambda item: _order(*item[0])):
    prefix = '.'.join(str(p) for p in (section, index, submodule) if p != '')
    kind = _layer_kind(section, submodule, tensors)
    if kind is None:
      unused.extend(f'{prefix}.{leaf}' for leaf in tensors)
    else:
      layers.append(_TorchLayer(kind, prefix, tensors))
  return layers, unused


def _order(section: str, index: int, submodule: str) -> tuple[int, int, int, str]:
  """Network order: features before the classifier, a block's conv before its bNorm."""
  section_rank = 0 if section in ('layers', 'features') else 1
  submodule_rank = {'': 0, 'conv': 0, 'bNorm': 1}.get(submodule, 2)
  return section_rank, index, submodule_rank, submodule


def _layer_kind(section: str, submodule: str, tensors: Mapping[str, np.ndarray]):
  """'conv', 'bn', 'linear' or None (unknown) for one torch module."""
  if section in ('fc_layers', 'classifier'):
    return 'linear' if not submodule else None
  if section == 'layers':
    return {'conv': 'conv', 'bNorm': 'bn'}.get(submodule)
  # torchvision `features.<n>`: BatchNorm has running statistics or a 1-D weight.
  if submodule:
    return None
  weight = tensors.get('weight')
  if any(k in tensors for k in _BN_STATS_KEYS) or (weight is not None and weight.ndim == 1):
    return 'bn'
  return 'conv'


def flax_conv_names(model: models.VGG) -> list[str]:
  """The Flax conv blocks in network order: the k-th torch conv (and its BatchNorm) maps to
  `<name>_conv` (and `<name>_bn`) of the k-th name."""
  plan = models.stage_plan(model.depth, model.conv1x1)
  return [f'stage{s + 1}_{i + 1}' for s, kernels in enumerate(plan)
          for i in range(len(kernels))]


def _expected_variables(model: models.VGG):
  """Shapes of the model's variables; conv and dense shapes do not depend on image size."""
  side = models.MIN_IMAGE_SIZE * 2
  images = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def _check_structure(convs, bns, linears, model: models.VGG) -> None:
  """Raises a ValueError that names the depth when the layer counts do not fit the model."""
  num_convs = sum(len(k) for k in models.stage_plan(model.depth, model.conv1x1))
  if len(convs) != num_convs:
    guess = _DEPTH_OF_NUM_CONVS.get(len(convs))
    hint = (f': is this a depth-{guess} model?' if guess else
            f'; VGG depths have {sorted(_DEPTH_OF_NUM_CONVS)} conv layers.')
    raise ValueError(f'state_dict has {len(convs)} conv layers but VGG depth {model.depth} '
                     f'has {num_convs}{hint}')
  if len(linears) != 3:
    raise ValueError(f'state_dict has {len(linears)} Linear layers ('
                     f'{", ".join(l.prefix for l in linears)}) but VGG has 3.')
  if bns and not model.batch_norm:
    raise ValueError(f'state_dict has {len(bns)} BatchNorm layers but the model has '
                     f'batch_norm=False: set model.batch_norm=True.')


def _pair_batch_norms(layers):
  """Splits layers into convs, the BatchNorm after each conv (or None) and linears.

  A BatchNorm that follows no conv is left out, so its keys are reported as unused.
  """
  convs, bn_of_conv, linears = [], [], []
  for layer in layers:
    if layer.kind == 'conv':
      convs.append(layer)
      bn_of_conv.append(None)
    elif layer.kind == 'bn':
      if convs and bn_of_conv[-1] is None and not linears:
        bn_of_conv[-1] = layer
    else:
      linears.append(layer)
  return convs, bn_of_conv, linears


def _fc1_rows_to_nhwc(weight: np.ndarray, pool_size, channels: int) -> np.ndarray:
  """Reorders fc1's inputs from torch's (c, h, w) flattening to Flax's (h, w, c)."""
  out_features = weight.shape[0]
  height, width = pool_size
  if weight.shape[1] != channels * height * width:
    return weight  # The shape check names the mismatch.
  weight = weight.reshape(out_features, channels, height, width).transpose(0, 2, 3, 1)
  return weight.reshape(out_features, -1)


def fc1_rows_to_nchw(weight: np.ndarray, pool_size, channels: int) -> np.ndarray:
  """The inverse of `_fc1_rows_to_nhwc`: Flax's (h, w, c) inputs back to torch's (c, h, w)."""
  out_features = weight.shape[0]
  height, width = pool_size
  weight = weight.reshape(out_features, height, width, channels).transpose(0, 3, 1, 2)
  return weight.reshape(out_features, -1)


class _Converter:
  """Fills the Flax variable tree, recording missing keys and shape mismatches."""

  def __init__(self, expected):
    self.expected = expected
    self.variables = {collection: {} for collection in expected}
    self.missing = []
    self.mismatches = []
    self.used = set()

  def put(self, collection, module, name, layer, torch_leaf, transform=lambda a: a):
    """Stores `layer.tensors[torch_leaf]` (transformed) as variables[collection][module][name]."""
    torch_name = f'{layer.prefix}.{torch_leaf}'
    if torch_leaf not in layer.tensors:
      self.missing.append(torch_name)
      return
    self.used.add(torch_name)
    array = transform(layer.tensors[torch_leaf].astype(np.float32))
    want = self.expected[collection][module][name].shape
    if array.shape != tuple(want):
      hint = ''
      if len(want) == 4 and array.shape[:2] != tuple(want[:2]):
        hint = ' (1x1 vs 3x3 kernels: check model.conv1x1)'
      self.mismatches.append(f'{torch_name} -> {collection}/{module}/{name} has shape '
                             f'{array.shape}, the model wants {tuple(want)}{hint}')
      return
    self.variables[collection].setdefault(module, {})[name] = array


def from_torch_state_dict(state_dict: Mapping[str, Any], model: models.VGG) -> dict:
  """Converts a PyTorch VGG state_dict into Flax variables for `model`.

  Args:
    state_dict: names to numpy arrays or torch tensors, in the original project's layout
      (`layers.*`, `fc_layers.*`) or torchvision's (`features.*`, `classifier.*`); a
      DataParallel `module.` prefix is allowed.
    model: the `VGG` module the weights are for; its depth, conv1x1, batch_norm, width,
      hidden_units, pool_size and num_classes must match the weights.

  Returns:
    {'params': ..., 'batch_stats': ...} (batch_stats only with BatchNorm) of float32 numpy
    arrays, ready for `model.apply`.

  Raises:
    ValueError: one line naming a wrong depth, the first shape mismatch, missing keys or
      unused keys.
  """
  layers, unused = _parse_layers(state_dict)
  convs, bn_of_conv, linears = _pair_batch_norms(layers)
  _check_structure(convs, [b for b in bn_of_conv if b is not None], linears, model)

  converter = _Converter(_expected_variables(model))
  for name, conv, bn in zip(flax_conv_names(model), convs, bn_of_conv):
    _convert_conv_block(converter, name, conv, bn, model.batch_norm)
  _convert_dense_layers(converter, linears, model)
  unused += [f'{layer.prefix}.{leaf}' for layer in layers for leaf in layer.tensors
             if f'{layer.prefix}.{leaf}' not in converter.used]
  _raise_on_problems(converter, unused)
  return converter.variables


def _convert_dense_layers(converter, linears, model):
  """Linear (out, in) -> Dense (in, out); fc1's inputs reordered to NHWC flattening."""
  last_conv = f'{flax_conv_names(model)[-1]}_conv'
  channels = converter.expected['params'][last_conv]['kernel'].shape[-1]
  for i, linear in enumerate(linears, start=1):
    if i == 1:
      to_kernel = lambda w: _fc1_rows_to_nhwc(w, model.pool_size, channels).T
    else:
      to_kernel = lambda w: w.T
    converter.put('params', f'fc{i}', 'kernel', linear, 'weight', to_kernel)
    converter.put('params', f'fc{i}', 'bias', linear, 'bias')


def _convert_conv_block(converter, name, conv, bn, batch_norm):
  """Conv OIHW -> HWIO; BatchNorm weight/bias -> params, running stats -> batch_stats."""
  converter.put('params', f'{name}_conv', 'kernel', conv, 'weight',
                lambda w: w.transpose(2, 3, 1, 0))
  converter.put('params', f'{name}_conv', 'bias', conv, 'bias')
  if not batch_norm:
    return
  if bn is None:
    converter.missing.append(f'BatchNorm after {conv.prefix} (for {name}_bn)')
    return
  for torch_leaf, flax_name in _BN_KEYS.items():
    converter.put('params', f'{name}_bn', flax_name, bn, torch_leaf)
  for torch_leaf, flax_name in _BN_STATS_KEYS.items():
    converter.put('batch_stats', f'{name}_bn', flax_name, bn, torch_leaf)


def _raise_on_problems(converter: _Converter, unused: list[str]) -> None:
  problems = []
  if converter.mismatches:
    problems.append(f'shape mismatch: {converter.mismatches[0]}'
                    + (f' (and {len(converter.mismatches) - 1} more)'
                       if len(converter.mismatches) > 1 else ''))
  if converter.missing:
    problems.append(f'missing keys: {", ".join(converter.missing)}')
  if unused:
    problems.append(f'unused keys: {", ".join(unused)}')
  if problems:
    raise ValueError('Cannot convert the state_dict: ' + '; '.join(problems) + '.')


def num_classes_of(state_dict: Mapping[str, Any]) -> int:
  """Outputs of the state_dict's last Linear layer (the model's number of classes)."""
  layers, _ = _parse_layers(state_dict)
  linears = [l for l in layers if l.kind == 'linear' and 'weight' in l.tensors]
  if not linears:
    raise ValueError('state_dict has no Linear layer (fc_layers.* or classifier.*).')
  return int(linears[-1].tensors['weight'].shape[0])


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a `torch.save(model.state_dict(), path)` file without unpickling objects.

  Args:
    path: the file.

  Returns:
    Names to float numpy arrays.

  Raises:
    ValueError: when the file is not a plain state_dict (e.g. a whole-model pickle).
  """
  import torch  # pylint: disable=g-import-not-at-top  # Only the CLI needs torch.
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # Re-raised with the remedy.
    raise ValueError(
        f'{path} is not a plain state_dict ({type(e).__name__}). Whole-model pickles are '
        f'not loaded (that would run arbitrary code): load it with the original code and '
        f'save `torch.save(model.state_dict(), ...)` instead.') from e
  if not isinstance(loaded, Mapping):
    raise ValueError(f'{path} holds a {type(loaded).__name__}, not a state_dict mapping.')
  for name, value in loaded.items():
    # weights_only admits dicts, lists and numbers inside the mapping too.
    if not isinstance(name, str) or not hasattr(value, 'detach'):
      raise ValueError(f'{path}: entry {name!r} holds a {type(value).__name__}, not a '
                       'tensor; a state_dict maps parameter names to tensors (save '
                       '`model.state_dict()`, not a dict of them).')
  return {name: to_numpy(value) for name, value in loaded.items()}


# --- Flax variables -> PyTorch ------------------------------------------------------------


def _torch_names(model: models.VGG, layout: str) -> tuple[list[tuple[str, str | None]],
                                                          list[str]]:
  """Module names of the conv blocks ((conv, BatchNorm or None), network order) and of the
  three Linear layers, in the torch `layout`."""
  blocks, index = [], 0
  for kernels in models.stage_plan(model.depth, model.conv1x1):
    for _ in kernels:
      if layout == 'original':  # A block module (conv, bNorm, relu), then the next index.
        blocks.append((f'layers.{index}.conv',
                       f'layers.{index}.bNorm' if model.batch_norm else None))
        index += 1
      else:  # Flat modules: conv, [BatchNorm], ReLU.
        blocks.append((f'features.{index}',
                       f'features.{index + 1}' if model.batch_norm else None))
        index += 3 if model.batch_norm else 2
    index += 1  # The stage's max pool.
  if layout == 'original':
    return blocks, ['fc_layers.0', 'fc_layers.2', 'fc_layers.4']  # Linear, ReLU, ...
  return blocks, ['classifier.0', 'classifier.3', 'classifier.6']  # Linear, ReLU, Dropout, ...


def to_torch_state_dict(variables: dict, model: models.VGG,
                        layout: str = 'original') -> collections.OrderedDict:
  """Flax variables -> a PyTorch state_dict of numpy arrays (the inverse of `convert`).

  Args:
    variables: {'params': ..., 'batch_stats': ...} of `model`.
    model: the VGG the variables belong to.
    layout: 'original' (`layers.*`, `fc_layers.*`) or 'torchvision' (`features.*`,
      `classifier.*`).

  Returns:
    Names to float32 arrays (int64 `num_batches_tracked` for BatchNorm, 0: the step count is
    not kept, and with a set momentum PyTorch does not use it), in module order.
  """
  if layout not in LAYOUTS:
    raise ValueError(f'--layout={layout!r} is not one of {", ".join(LAYOUTS)}.')
  params, stats = variables['params'], variables.get('batch_stats', {})
  blocks, linears = _torch_names(model, layout)
  state = collections.OrderedDict()
  for name, (conv, bn) in zip(flax_conv_names(model), blocks):
    state[f'{conv}.weight'] = params[f'{name}_conv']['kernel'].transpose(3, 2, 0, 1)
    state[f'{conv}.bias'] = params[f'{name}_conv']['bias']
    if bn is None:
      continue
    for torch_leaf, flax_name in _BN_KEYS.items():
      state[f'{bn}.{torch_leaf}'] = params[f'{name}_bn'][flax_name]
    for torch_leaf, flax_name in _BN_STATS_KEYS.items():
      state[f'{bn}.{torch_leaf}'] = stats[f'{name}_bn'][flax_name]
    state[f'{bn}.num_batches_tracked'] = np.zeros((), np.int64)
  channels = params[f'{flax_conv_names(model)[-1]}_conv']['kernel'].shape[-1]
  for i, linear in enumerate(linears, start=1):
    weight = params[f'fc{i}']['kernel'].T
    if i == 1:
      weight = fc1_rows_to_nchw(weight, model.pool_size, channels)
    state[f'{linear}.weight'] = weight
    state[f'{linear}.bias'] = params[f'fc{i}']['bias']
  return collections.OrderedDict(
      (k, np.ascontiguousarray(v, dtype=np.int64 if v.dtype == np.int64 else np.float32))
      for k, v in state.items())


def save_torch(state_dict: dict, path: pathlib.Path) -> None:
  """`torch.save`s the state_dict as torch tensors (loadable with `weights_only=True`).

  Raises:
    ModuleNotFoundError: PyTorch is not installed (requirements.txt leaves it out).
  """
  import torch  # pylint: disable=g-import-not-at-top  # Only this format needs torch.
  tensors = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state_dict.items())
  torch.save(tensors, path)
