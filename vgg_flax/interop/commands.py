"""The commands that move models in and out: `python -m vgg_flax.convert` and `... export`.

  python -m vgg_flax.convert --state_dict=vgg16.pt --config=configs/vgg16.py \
      --workdir=runs/vgg16_torch
  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --output=vgg16.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --layout=torchvision \
      --output=vgg16_tv.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=saved_model --output=vgg16_savedmodel

Convert writes a workdir that evaluate, predict and predict_ensemble load like a trained one
(`config.json` and a `best/` checkpoint). Export writes a workdir's `best/` model as
`torch.save(state_dict)` in the original project's module layout (`layers.<i>.conv`,
`layers.<i>.bNorm` with the pools counted in `i`, then `fc_layers.0/2/4`) or torchvision's
(`features.<n>`, `classifier.0/3/6`), or as a SavedModel (`interop.saved_model`). The
layer order is `interop.torch_weights`', so convert reads an exported file back into the
same variables. The model is rebuilt from the workdir's `config.json`; the number of
classes is read from the checkpoint, so neither command needs a dataset.
"""

import errno
import os
import pathlib
import shutil
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vgg_flax.core import models
from vgg_flax.interop import saved_model
from vgg_flax.interop import torch_weights
from vgg_flax.workdir import checkpoints
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

FORMATS = ('torch', 'saved_model')
LAYOUTS = torch_weights.LAYOUTS


class ExportError(ValueError):
  """A bad workdir, format, layout or output path; the message says what would be right."""


# --- PyTorch -> workdir (convert) ---------------------------------------------------------


def convert_file(path: str, config) -> tuple[models.VGG, dict]:
  """Builds the model of `config` for the weights in `path` and converts them.

  Args:
    path: a `torch.save(model.state_dict())` file.
    config: a config from `configs/` (its `model` section and `dtype`).

  Returns:
    (model, variables).
  """
  state_dict = torch_weights.load_state_dict(path)
  model = models.create_model(config.model,
                              num_classes=torch_weights.num_classes_of(state_dict),
                              dtype=config.dtype)
  return model, torch_weights.from_torch_state_dict(state_dict, model)


def write_converted_workdir(config, variables: Mapping[str, Any], workdir: str) -> str:
  """Writes a workdir that evaluate, predict and predict_ensemble load like a trained run.

  The layout is a training workdir's: `config.json` and a `best/` checkpoint of the
  variables (epoch 0: no training happened here).

  Args:
    config: the ConfigDict the model was built from.
    variables: {'params': ..., 'batch_stats': ...} from `from_torch_state_dict`.
    workdir: directory to create; an existing `best/` checkpoint in it is refused.

  Returns:
    The path of the `best/` checkpoint folder.
  """
  workdir = os.path.abspath(workdir)
  if checkpoints.has_best_checkpoint(workdir):
    raise ValueError(f'{workdir} already holds a best/ checkpoint; choose a new --workdir.')
  os.makedirs(workdir, exist_ok=True)
  run_config.write_config(workdir, config)
  checkpoints.save_best_variables(workdir, dict(variables), loop={'epoch': 0, 'converted': True})
  return os.path.join(workdir, files.BEST_DIR)


# --- workdir -> PyTorch or SavedModel (export) ---------------------------------------------


def load_best(workdir: str | os.PathLike) -> tuple[ml_collections.ConfigDict, models.VGG, dict]:
  """A workdir's config, the model it describes and its `best/` variables (numpy).

  Raises:
    ExportError: no such workdir, no `config.json` or `best/`, or a checkpoint that does not
      fit the config.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ExportError(f'workdir {workdir} does not exist; give a trained workdir.')
  if not (workdir / files.CONFIG_FILE).is_file():
    raise ExportError(f'{workdir} holds no {files.CONFIG_FILE}: it is not a training workdir.')
  if not checkpoints.has_best_checkpoint(workdir):
    raise ExportError(f'{workdir} holds no best/ checkpoint; train it for at least one '
                      'epoch first.')
  config = run_config.read_config(workdir)
  # Restored as saved (no target): the checkpoint itself says how many classes there are.
  variables, _ = checkpoints.restore_best_variables(workdir, None)
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
      _save_torch(torch_weights.to_torch_state_dict(variables, model, layout), tmp)
    else:
      saved_model.save_saved_model(model, variables, config, tmp)
    _move_without_overwriting(tmp, output)
  finally:
    if tmp.is_dir():
      shutil.rmtree(tmp)
    elif tmp.exists():
      tmp.unlink()
  return {'format': fmt, 'layout': layout if fmt == 'torch' else None, 'output': str(output),
          'depth': model.depth, 'num_classes': model.num_classes,
          'image_size': int(config.image_size)}


def _move_without_overwriting(tmp: pathlib.Path, output: pathlib.Path) -> None:
  """Renames `tmp` to `output`, failing if anything appeared at `output` meanwhile.

  A file is hard-linked (which fails on any existing name) and its temporary removed; a
  folder is renamed, which the kernel refuses onto a file or a non-empty folder (an empty
  folder that appeared meanwhile is replaced: nothing in it is lost).
  """
  try:
    if tmp.is_dir():
      os.rename(tmp, output)
    else:
      os.link(tmp, output)
      tmp.unlink()
  except OSError as error:
    if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
      raise
    raise ExportError(f'{output} already exists: it appeared while exporting; nothing was '
                      'overwritten and the export is discarded: choose a new --output.'
                      ) from None


def _save_torch(state_dict: Mapping[str, np.ndarray], path: pathlib.Path) -> None:
  try:
    torch_weights.save_torch(state_dict, path)
  except ModuleNotFoundError:
    raise ExportError('--format=torch needs PyTorch, which requirements.txt does not '
                      'install: pip install -r requirements-dev.txt.') from None
