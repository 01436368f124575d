"""Export: the PyTorch state_dict and the SavedModel predict what `--mode=predict` predicts."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

import converted_workdir
import torch_models
from vgg_flax import convert
from vgg_flax.modes import predictions as inference
from vgg_flax.core import models
from vgg_flax.modes import own_images
from vgg_flax.interop import commands
from vgg_flax.workdir import restore
from vgg_flax.interop import torch_weights

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- PyTorch modules in the two layouts (max pool to 2x2, as the flax models here) -------


def original_vgg(depth, width, hidden, num_classes):
  return torch_models.OriginalVGG(depth, width=width, hidden=hidden, num_classes=num_classes,
                                  pool='max')


def torchvision_vgg(depth, width, hidden, num_classes):
  return torch_models.TorchvisionVGG(depth, width=width, hidden=hidden,
                                     num_classes=num_classes, pool=2, pool_type='max')


def torch_probabilities(module, images):
  """Softmax of a torch model on uint8 NHWC images, normalised as the project does."""
  x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
  with torch.no_grad():
    return torch.softmax(module.eval()(x), dim=-1).numpy()


# --- Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, sample_folder, tfds_data_dir, sample_params):
  """A workdir of a VGG-11 at 64 px (the sample's size: nothing is resized)."""
  path = tmp_path_factory.mktemp('export') / 'run'
  config = converted_workdir.small_config(sample_folder, tfds_data_dir)
  converted_workdir.write_workdir(path, config, sample_params['num_classes'])
  return path


@pytest.fixture(scope='module')
def predicted(workdir, sample_folder, tfds_data_dir):
  """`--mode=predict`'s probabilities on the sample's test JPEGs, and those images' pixels."""
  config = converted_workdir.small_config(sample_folder, tfds_data_dir)
  restored = restore.restore_model('run', workdir, runtime=config, data=config)
  predictions = inference.predict_split(restored, 'test')
  folder = pathlib.Path(sample_folder) / 'test' / 'images'
  images = np.stack([own_images.load_image(str(folder / name), (64, 64, 3))
                     for name in predictions.file_names])
  assert predictions.probabilities.max(axis=-1).mean() > 0.5  # Far from uniform (1/4).
  return predictions.probabilities, images


# --- Names ---------------------------------------------------------------------------------


def small_model(depth=11, batch_norm=True, conv1x1=False):
  return models.VGG(depth=depth, conv1x1=conv1x1, num_classes=5, batch_norm=batch_norm,
                    width=4, hidden_units=16)


def prefixes(state_dict):
  return list(dict.fromkeys(key.rsplit('.', 1)[0] for key in state_dict))


def test_original_layout_counts_pools_in_the_layer_index():
  model = small_model()
  state = torch_weights.to_torch_state_dict(
      converted_workdir.sharp_variables(model, 32), model, 'original')
  # VGG-11: block, pool, block, pool, block, block, pool, block, block, pool, block, block.
  blocks = [0, 2, 4, 5, 7, 8, 10, 11]
  assert prefixes(state) == [f'layers.{i}.{m}' for i in blocks for m in ('conv', 'bNorm')] + [
      'fc_layers.0', 'fc_layers.2', 'fc_layers.4']
  assert state['layers.0.bNorm.num_batches_tracked'].dtype == np.int64
  assert state['layers.4.conv.weight'].shape == (16, 8, 3, 3)  # OIHW.
  assert state['fc_layers.0.weight'].shape == (16, 32 * 2 * 2)  # (out, in).


@pytest.mark.parametrize('batch_norm,convs', [
    (True, [0, 4, 8, 11, 15, 18, 22, 25]),  # torchvision's vgg11_bn.
    (False, [0, 3, 6, 8, 11, 13, 16, 18]),  # torchvision's vgg11.
])
def test_torchvision_layout_numbers_features_like_torchvision(batch_norm, convs):
  model = small_model(batch_norm=batch_norm)
  state = torch_weights.to_torch_state_dict(
      converted_workdir.sharp_variables(model, 32), model, 'torchvision')
  conv_names = [p for p in prefixes(state) if state[f'{p}.weight'].ndim == 4]
  assert conv_names == [f'features.{i}' for i in convs]
  bn_names = [p for p in prefixes(state) if f'{p}.running_var' in state]
  assert bn_names == ([f'features.{i + 1}' for i in convs] if batch_norm else [])
  assert prefixes(state)[-3:] == ['classifier.0', 'classifier.3', 'classifier.6']


@pytest.mark.parametrize('layout', torch_weights.LAYOUTS)
@pytest.mark.parametrize('depth,conv1x1,batch_norm', [(11, False, True), (16, True, True),
                                                      (11, False, False)])
def test_export_then_convert_is_the_identity(layout, depth, conv1x1, batch_norm):
  model = small_model(depth, batch_norm, conv1x1)
  variables = converted_workdir.sharp_variables(model, 32, seed=depth)
  back = convert.from_torch_state_dict(torch_weights.to_torch_state_dict(variables, model, layout),
                                       model)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(got, want)


def test_fc1_inputs_go_back_to_channel_major_order():
  # A row in Flax's (h, w, c) order over a 2x2 pool of 2 channels: entry (h, w, c) holds
  # 4h + 2w + c. In torch's (c, h, w) order channel 0 comes first: 0, 2, 4, 6, then 1, 3, 5, 7.
  nchw = torch_weights.fc1_rows_to_nchw(np.arange(8, dtype=np.float32)[None], (2, 2), 2)
  np.testing.assert_array_equal(nchw, [[0, 2, 4, 6, 1, 3, 5, 7]])


# --- Same probabilities as --mode=predict --------------------------------------------------


@pytest.mark.parametrize('layout,module', [
    ('original', lambda: original_vgg(11, 8, 32, 4)),
    ('torchvision', lambda: torchvision_vgg(11, 8, 32, 4)),
])
def test_torch_model_predicts_like_predict(workdir, predicted, tmp_path, layout, module):
  probabilities, images = predicted
  path = tmp_path / f'{layout}.pt'
  summary = commands.export_workdir(workdir, path, fmt='torch', layout=layout)
  assert summary['num_classes'] == 4 and summary['depth'] == 11
  torch_model = module()
  torch_model.load_state_dict(torch.load(path, weights_only=True), strict=True)
  np.testing.assert_allclose(torch_probabilities(torch_model, images), probabilities,
                             rtol=0, atol=1e-4)


def test_saved_model_predicts_like_predict(workdir, predicted, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  probabilities, images = predicted
  commands.export_workdir(workdir, tmp_path / 'saved', fmt='saved_model')
  serve = tf.saved_model.load(str(tmp_path / 'saved')).signatures['serving_default']
  spec = serve.structured_input_signature[1]['images']
  assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 64, 64, 3]
  outputs = serve(images=tf.constant(images))
  assert list(outputs) == ['probabilities']
  assert outputs['probabilities'].shape == (len(images), 4)
  np.testing.assert_allclose(outputs['probabilities'].numpy(), probabilities, rtol=0,
                             atol=1e-4)
  # Any batch size (the signature's batch dimension is free).
  np.testing.assert_allclose(serve(images=tf.constant(images[:3]))['probabilities'].numpy(),
                             probabilities[:3], rtol=0, atol=1e-4)
  # Lowered for every platform, not only the CPU that exported it.
  assert saved_platforms(tmp_path / 'saved') == [[b'CPU', b'CUDA', b'TPU']]


def saved_platforms(path):
  """The `platforms` of each XlaCallModule op (the jax2tf computation) of a SavedModel."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved = saved_model_pb2.SavedModel.FromString((path / 'saved_model.pb').read_bytes())
  graph = saved.meta_graphs[0].graph_def
  nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
  return [list(n.attr['platforms'].list.s) for n in nodes if n.op == 'XlaCallModule']


# --- Bad input -----------------------------------------------------------------------------


def assert_one_line(raised, *fragments):
  message = str(raised.value)
  assert '\n' not in message
  for fragment in fragments:
    assert fragment in message


def test_workdir_without_best_checkpoint(workdir, tmp_path):
  empty = tmp_path / 'untrained'
  empty.mkdir()
  (empty / 'config.json').write_text((workdir / 'config.json').read_text())
  with pytest.raises(commands.ExportError) as raised:
    commands.export_workdir(empty, tmp_path / 'out.pt')
  assert_one_line(raised, str(empty), 'no best/ checkpoint')
  assert not (tmp_path / 'out.pt').exists()


def test_missing_or_foreign_workdir(tmp_path):
  with pytest.raises(commands.ExportError) as raised:
    commands.export_workdir(tmp_path / 'nowhere', tmp_path / 'out.pt')
  assert_one_line(raised, f'workdir {tmp_path / "nowhere"} does not exist')
  (tmp_path / 'notes').mkdir()
  with pytest.raises(commands.ExportError) as raised:
    commands.export_workdir(tmp_path / 'notes', tmp_path / 'out.pt')
  assert_one_line(raised, 'notes holds no config.json')


@pytest.mark.parametrize('fmt,layout,fragment', [
    ('onnx', 'original', "--format='onnx' is not one of torch, saved_model"),
    ('torch', 'caffe', "--layout='caffe' is not one of original, torchvision"),
])
def test_unknown_format_or_layout(workdir, tmp_path, fmt, layout, fragment):
  with pytest.raises(commands.ExportError) as raised:
    commands.export_workdir(workdir, tmp_path / 'out', fmt=fmt, layout=layout)
  assert_one_line(raised, fragment)
  assert not list(tmp_path.iterdir())


def test_existing_output_is_not_overwritten(workdir, tmp_path):
  output = tmp_path / 'model.pt'
  output.write_text('keep me')
  with pytest.raises(commands.ExportError) as raised:
    commands.export_workdir(workdir, output)
  assert_one_line(raised, str(output), 'already exists')
  assert output.read_text() == 'keep me'


@pytest.mark.slow
def test_cli_exports_then_refuses_to_overwrite(workdir, tmp_path):
  command = [sys.executable, '-m', 'vgg_flax.export', f'--workdir={workdir}',
             '--format=torch', f'--output={tmp_path / "model.pt"}']
  run = lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               timeout=300, check=False)
  first = run()
  assert first.returncode == 0, first.stderr[-2000:]
  assert 'num_classes=4' in first.stdout
  state = torch.load(tmp_path / 'model.pt', weights_only=True)
  assert 'layers.0.bNorm.running_var' in state and 'fc_layers.4.bias' in state
  second = run()
  assert second.returncode == 2
  assert 'Traceback' not in second.stderr
  assert [l for l in second.stderr.splitlines() if l.startswith('error:')] == [
      f'error: {tmp_path / "model.pt"} already exists; choose a new --output (nothing is '
      'overwritten).']
