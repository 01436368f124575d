"""A workdir's `best/` model out to PyTorch (a state_dict) or to a TensorFlow SavedModel.

  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --output=vgg16.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --layout=torchvision \
      --output=vgg16_tv.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=saved_model --output=vgg16_savedmodel

`--format=torch` writes `torch.save(state_dict)` in the original project's module layout
(`layers.<i>.conv`, `layers.<i>.bNorm` with the pools counted in `i`, then `fc_layers.0/2/4`)
or, with `--layout=torchvision`, in torchvision's (`features.<n>`, `classifier.0/3/6`). The
first dense layer's inputs are put back into PyTorch's (channel, height, width) flattening.
The layer order and that permutation are `vgg_flax.convert`'s, so `convert` reads the file
back into the same variables.

`--format=saved_model` writes a SavedModel (jax2tf) whose `serving_default` signature takes
`images`: uint8 `[N, image_size, image_size, 3]` and returns `probabilities`:
float32 `[N, num_classes]`, normalised and computed exactly as `--mode=predict` does.

The model is rebuilt from the workdir's `config.json`; the number of classes is read from
the checkpoint, so exporting needs no dataset.
"""

import collections
import logging as pylogging
import os
import pathlib
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vgg_flax import checkpointing
from vgg_flax import configuration
from vgg_flax import convert
from vgg_flax import models
from vgg_flax import steps
from vgg_flax import workdir as workdirs

FORMATS = ('torch', 'saved_model')
LAYOUTS = ('original', 'torchvision')
# The SavedModel is lowered for each, so it serves on any of them whatever trained it.
SERVING_PLATFORMS = ('cpu', 'cuda', 'tpu')
# The JAX computation is lowered for a fixed batch of this many images, and the signature
# pads any batch to a multiple of it and maps over the chunks. A symbolic batch dimension
# would be simpler, but JAX guards one with a `shape_assertion` op newer than TensorFlow
# 2.21 (the newest release) can read ("failed to deserialize portable artifact"), and offers
# no public switch to leave the guard out. Inference is per image (BatchNorm uses its running
# statistics), so the padding changes no result.
SERVING_CHUNK = 16

class ExportError(ValueError):
  """A bad workdir, format, layout or output path; the message says what would be right."""


def load_best(workdir: str | os.PathLike) -> tuple[ml_collections.ConfigDict, models.VGG, dict]:
  """A workdir's config, the model it describes and its `best/` variables (numpy).

  Raises:
    ExportError: no such workdir, no `config.json` or `best/`, or a checkpoint that does not
      fit the config.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ExportError(f'workdir {workdir} does not exist; give a trained workdir.')
  if not (workdir / workdirs.CONFIG_FILE).is_file():
    raise ExportError(f'{workdir} holds no {workdirs.CONFIG_FILE}: it is not a training workdir.')
  if not checkpointing.has_best_checkpoint(workdir):
    raise ExportError(f'{workdir} holds no best/ checkpoint; train it for at least one '
                      'epoch first.')
  config = workdirs.read_config(workdir)
  # Restored as saved (no target): the checkpoint itself says how many classes there are.
  variables, _ = checkpointing.restore_best_variables(workdir, None)
  variables = jax.tree.map(np.asarray, variables)
  num_classes = int(variables['params']['fc3']['bias'].shape[0])
  model = models.create_model(config.model, num_classes=num_classes, dtype=config.dtype)
  size = int(config.image_size)
  expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  got = jax.tree.map(lambda x: tuple(x.shape), variables)
  want = jax.tree.map(lambda x: tuple(x.shape), expected)
  if got != want:
    raise ExportError(f'the best/ checkpoint of {workdir} does not fit its config.json '
                      f'(depth {model.depth}, width {model.width}); was config.json edited?')
  return config, model, variables


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
    raise ExportError(f'--layout={layout!r} is not one of {", ".join(LAYOUTS)}.')
  params, stats = variables['params'], variables.get('batch_stats', {})
  blocks, linears = _torch_names(model, layout)
  state = collections.OrderedDict()
  for name, (conv, bn) in zip(convert.flax_conv_names(model), blocks):
    state[f'{conv}.weight'] = params[f'{name}_conv']['kernel'].transpose(3, 2, 0, 1)
    state[f'{conv}.bias'] = params[f'{name}_conv']['bias']
    if bn is None:
      continue
    for torch_leaf, flax_name in convert.BN_PARAM_NAMES.items():
      state[f'{bn}.{torch_leaf}'] = params[f'{name}_bn'][flax_name]
    for torch_leaf, flax_name in convert.BN_STATS_NAMES.items():
      state[f'{bn}.{torch_leaf}'] = stats[f'{name}_bn'][flax_name]
    state[f'{bn}.num_batches_tracked'] = np.zeros((), np.int64)
  channels = params[f'{convert.flax_conv_names(model)[-1]}_conv']['kernel'].shape[-1]
  for i, linear in enumerate(linears, start=1):
    weight = params[f'fc{i}']['kernel'].T
    if i == 1:
      weight = convert.fc1_rows_to_nchw(weight, model.pool_size, channels)
    state[f'{linear}.weight'] = weight
    state[f'{linear}.bias'] = params[f'fc{i}']['bias']
  return collections.OrderedDict(
      (k, np.ascontiguousarray(v, dtype=np.int64 if v.dtype == np.int64 else np.float32))
      for k, v in state.items())


def save_torch(state_dict: dict, path: pathlib.Path) -> None:
  """`torch.save`s the state_dict as torch tensors (loadable with `weights_only=True`)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  # Only this format needs torch.
  except ImportError:
    raise ExportError('--format=torch needs PyTorch, which requirements.txt does not '
                      'install: pip install torch==2.14.1.') from None
  tensors = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state_dict.items())
  torch.save(tensors, path)


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


def export_workdir(workdir: str | os.PathLike, output: str | os.PathLike, *,
                   fmt: str = 'torch', layout: str = 'original') -> dict[str, Any]:
  """Exports a workdir's `best/` model; see the module docstring.

  The output appears only when complete (written beside it, then renamed).

  Args:
    workdir: a training (or converted) workdir.
    output: the file (torch) or folder (saved_model) to create; it must not exist.
    fmt: 'torch' or 'saved_model'.
    layout: for torch, 'original' or 'torchvision'.

  Returns:
    A summary: format, layout, output, depth, num_classes, image_size.

  Raises:
    ExportError: an unknown format or layout, an existing output, or a bad workdir.
  """
  if fmt not in FORMATS:
    raise ExportError(f'--format={fmt!r} is not one of {", ".join(FORMATS)}.')
  if layout not in LAYOUTS:
    raise ExportError(f'--layout={layout!r} is not one of {", ".join(LAYOUTS)}.')
  output = pathlib.Path(output)
  if output.exists():
    raise ExportError(f'{output} already exists; choose a new --output (nothing is '
                      'overwritten).')
  config, model, variables = load_best(workdir)
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = output.with_name(f'.{output.name}.{os.getpid()}.tmp')
  try:
    if fmt == 'torch':
      save_torch(to_torch_state_dict(variables, model, layout), tmp)
    else:
      save_saved_model(model, variables, config, tmp)
    os.replace(tmp, output)
  finally:
    if tmp.is_dir():
      shutil.rmtree(tmp)
    elif tmp.exists():
      tmp.unlink()
  return {'format': fmt, 'layout': layout if fmt == 'torch' else None, 'output': str(output),
          'depth': model.depth, 'num_classes': model.num_classes,
          'image_size': int(config.image_size)}


def main(argv):
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])}', file=sys.stderr)
    sys.exit(2)
  missing = [f'--{name}' for name in ('workdir', 'output') if not FLAGS[name].value]
  try:
    if missing:
      raise ExportError(f'{" and ".join(missing)} must be given, e.g. --workdir=runs/vgg16 '
                        '--format=torch --output=vgg16.pt.')
    summary = export_workdir(FLAGS.workdir, FLAGS.output, fmt=FLAGS.format,
                             layout=FLAGS.layout)
  except (ExportError, configuration.ConfigError, FileNotFoundError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  print(' '.join(f'{k}={v}' for k, v in summary.items() if v is not None))


if __name__ == '__main__':
  # Flags are defined only when run as a program (as in `vgg_flax.convert`).
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  FLAGS = flags.FLAGS
  # Plain strings, checked by `export_workdir`: a wrong value is one line and exit status 2.
  flags.DEFINE_string('workdir', None, 'The training workdir whose best/ model to export.')
  flags.DEFINE_string('format', 'torch', f'One of {", ".join(FORMATS)}.')
  flags.DEFINE_string('layout', 'original', f'For --format=torch: one of {", ".join(LAYOUTS)}.')
  flags.DEFINE_string('output', None, 'File (torch) or folder (saved_model) to create.')
  app.run(main)
