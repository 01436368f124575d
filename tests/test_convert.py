"""The same weights give the same logits in PyTorch and, converted, in Flax."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from torch import nn

from vgg_flax import convert
from vgg_flax.core import models
from vgg_flax.interop import commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Convs per stage, written out here so the test does not trust models.STAGE_PLANS.
PLANS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTH = 8
HIDDEN = 32
NUM_CLASSES = 10


def kernel_sizes(depth, conv1x1):
  """Per stage, the kernel sizes; config C's last conv of stages 3-5 is 1x1."""
  plan = [[3] * n for n in PLANS[depth]]
  if conv1x1:
    for stage in (2, 3, 4):
      plan[stage][-1] = 1
  return plan


class Block(nn.Module):
  """The original project's conv block: conv -> bNorm -> ReLU."""

  def __init__(self, cin, cout, kernel):
    super().__init__()
    # Unpadded 1x1 convs: the correct configuration C, not the original's padding=1.
    self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
    self.bNorm = nn.BatchNorm2d(cout)  # pylint: disable=invalid-name
    self.relu = nn.ReLU()

  def forward(self, x):
    return self.relu(self.bNorm(self.conv(x)))


class OriginalVGG(nn.Module):
  """The original project's module layout: `layers` then `fc_layers`."""

  def __init__(self, depth, conv1x1=False):
    super().__init__()
    layers, cin = [], 3
    for stage, kernels in enumerate(kernel_sizes(depth, conv1x1)):
      cout = WIDTH * (1, 2, 4, 8, 8)[stage]
      for kernel in kernels:
        layers.append(Block(cin, cout, kernel))
        cin = cout
      layers.append(nn.MaxPool2d(2))
    layers.append(nn.AdaptiveMaxPool2d(2))
    self.layers = nn.Sequential(*layers)
    self.fc_layers = nn.Sequential(
        nn.Linear(cin * 2 * 2, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, NUM_CLASSES))

  def forward(self, x):
    return self.fc_layers(torch.flatten(self.layers(x), 1))


class TorchvisionVGG(nn.Module):
  """torchvision's VGG layout (`features`, `avgpool`, `classifier`), from plain modules."""

  def __init__(self, depth, batch_norm):
    super().__init__()
    features, cin = [], 3
    for stage, kernels in enumerate(kernel_sizes(depth, False)):
      cout = WIDTH * (1, 2, 4, 8, 8)[stage]
      for _ in kernels:
        features.append(nn.Conv2d(cin, cout, 3, padding=1))
        if batch_norm:
          features.append(nn.BatchNorm2d(cout))
        features.append(nn.ReLU(inplace=True))
        cin = cout
      features.append(nn.MaxPool2d(2, 2))
    self.features = nn.Sequential(*features)
    self.avgpool = nn.AdaptiveAvgPool2d(7)
    self.classifier = nn.Sequential(
        nn.Linear(cin * 7 * 7, HIDDEN), nn.ReLU(True), nn.Dropout(),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(True), nn.Dropout(),
        nn.Linear(HIDDEN, NUM_CLASSES))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomize(module, seed=0):
  """Random weights and non-trivial BatchNorm statistics; eval mode."""
  torch.manual_seed(seed)
  for m in module.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
      nn.init.normal_(m.bias, std=0.1)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.uniform_(m.weight, 0.5, 1.5)
      nn.init.normal_(m.bias, std=0.1)
      m.running_mean.normal_(std=0.2)
      m.running_var.uniform_(0.5, 2.0)
    elif isinstance(m, nn.Linear):
      nn.init.normal_(m.weight, std=(2.0 / m.in_features) ** 0.5)
      nn.init.normal_(m.bias, std=0.1)
  return module.eval()


def flax_model(depth, conv1x1=False, **kwargs):
  kwargs = {'width': WIDTH, 'hidden_units': HIDDEN, 'num_classes': NUM_CLASSES, **kwargs}
  return models.VGG(depth=depth, conv1x1=conv1x1, **kwargs)


def assert_same_logits(torch_model, model, variables, size, seed=0):
  images = np.random.default_rng(seed).normal(size=(2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    want = torch_model(torch.from_numpy(images)).numpy()
  got = model.apply(variables, images.transpose(0, 2, 3, 1), train=False)
  assert np.std(want) > 0.05, 'logits too small for the comparison to mean anything'
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize('depth,conv1x1', [(11, False), (13, False), (16, False),
                                           (16, True), (19, False)])
def test_original_layout_gives_same_logits(depth, conv1x1):
  torch_model = randomize(OriginalVGG(depth, conv1x1))
  model = flax_model(depth, conv1x1)
  variables = convert.from_torch_state_dict(torch_model.state_dict(), model)
  assert set(variables) == {'params', 'batch_stats'}
  assert all(a.dtype == np.float32 for a in jax.tree.leaves(variables))
  assert_same_logits(torch_model, model, variables, size=64)


@pytest.mark.parametrize('depth,batch_norm', [(11, True), (13, False)])
def test_torchvision_layout_gives_same_logits(depth, batch_norm):
  torch_model = randomize(TorchvisionVGG(depth, batch_norm))
  model = flax_model(depth, batch_norm=batch_norm, pool_size=(7, 7), pool_type='avg')
  variables = convert.from_torch_state_dict(torch_model.state_dict(), model)
  assert ('batch_stats' in variables) == batch_norm
  assert_same_logits(torch_model, model, variables, size=224)


def test_accepts_numpy_arrays_and_data_parallel_prefix():
  torch_model = randomize(OriginalVGG(11))
  state_dict = {f'module.{k}': v.numpy() for k, v in torch_model.state_dict().items()}
  model = flax_model(11)
  assert_same_logits(torch_model, model, convert.from_torch_state_dict(state_dict, model),
                     size=64)


def test_wrong_depth_says_so():
  state_dict = OriginalVGG(13).state_dict()
  with pytest.raises(ValueError, match=r'10 conv layers but VGG depth 11 has 8: is this a '
                                       r'depth-13 model\?'):
    convert.from_torch_state_dict(state_dict, flax_model(11))


def test_missing_key_is_named():
  state_dict = OriginalVGG(11).state_dict()
  del state_dict['layers.4.bNorm.running_var']
  with pytest.raises(ValueError, match=r'missing keys: layers\.4\.bNorm\.running_var'):
    convert.from_torch_state_dict(state_dict, flax_model(11))


def test_unused_key_is_named():
  state_dict = OriginalVGG(11).state_dict()
  state_dict['extra.weight'] = torch.zeros(3)
  with pytest.raises(ValueError, match=r'unused keys: extra\.weight'):
    convert.from_torch_state_dict(state_dict, flax_model(11))


def test_first_shape_mismatch_is_named():
  state_dict = OriginalVGG(11).state_dict()
  with pytest.raises(ValueError) as error:
    convert.from_torch_state_dict(state_dict, flax_model(11, width=16))
  message = str(error.value)
  assert 'shape mismatch: layers.0.conv.weight -> params/stage1_1_conv/kernel' in message
  assert '\n' not in message


def test_batch_norm_weights_for_a_model_without_batch_norm():
  state_dict = OriginalVGG(11).state_dict()
  with pytest.raises(ValueError, match='batch_norm=False'):
    convert.from_torch_state_dict(state_dict, flax_model(11, batch_norm=False))


def test_convert_file_round_trip(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  torch_model = randomize(OriginalVGG(16, conv1x1=True))
  path = str(tmp_path / 'vgg16c.pt')
  torch.save(torch_model.state_dict(), path)
  config = default.get_config()
  config.model.update(depth=16, conv1x1=True, width=WIDTH, hidden_units=HIDDEN)
  assert isinstance(config, ml_collections.ConfigDict)

  model, variables = commands.convert_file(path, config)

  assert model.num_classes == NUM_CLASSES  # Read from the last Linear layer.
  assert_same_logits(torch_model, model, variables, size=64)


def test_order_of_keys_does_not_matter():
  torch_model = randomize(TorchvisionVGG(11, batch_norm=True))
  items = list(torch_model.state_dict().items())
  shuffled = dict(items[i] for i in np.random.default_rng(0).permutation(len(items)))
  model = flax_model(11, pool_size=(7, 7), pool_type='avg')
  variables = convert.from_torch_state_dict(shuffled, model)
  assert_same_logits(torch_model, model, variables, size=224)


def test_unknown_leaf_of_a_known_layer_is_unused():
  state_dict = OriginalVGG(11).state_dict()
  state_dict['layers.0.conv.weight_orig'] = torch.zeros(1)
  with pytest.raises(ValueError, match=r'unused keys: layers\.0\.conv\.weight_orig'):
    convert.from_torch_state_dict(state_dict, flax_model(11))


def test_whole_model_pickles_are_refused(tmp_path):
  path = str(tmp_path / 'whole.pt')
  torch.save(OriginalVGG(11), path)
  with pytest.raises(ValueError, match=r'state_dict\(\)'):
    convert.load_state_dict(path)


def test_conv1x1_weights_for_a_3x3_model_point_at_conv1x1():
  state_dict = OriginalVGG(16, conv1x1=True).state_dict()
  with pytest.raises(ValueError, match=r'layers\.\d+\.conv\.weight -> params/stage3_3_conv/'
                                       r'kernel .* check model\.conv1x1'):
    convert.from_torch_state_dict(state_dict, flax_model(16))


def test_write_converted_workdir_saves_config_and_variables(tmp_path):
  from configs import default  # pylint: disable=g-import-not-at-top
  from vgg_flax.workdir import checkpoints as checkpointing  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.update(depth=11, width=WIDTH, hidden_units=HIDDEN)
  model = flax_model(11)
  variables = convert.from_torch_state_dict(randomize(OriginalVGG(11)).state_dict(), model)

  commands.write_converted_workdir(config, variables, str(tmp_path / 'run'))

  assert (tmp_path / 'run' / 'config.json').read_text().count('"depth": 11') == 1
  abstract = jax.eval_shape(lambda: variables)
  restored, loop = checkpointing.restore_best_variables(tmp_path / 'run', abstract)
  assert loop == {'epoch': 0, 'converted': True}
  jax.tree.map(np.testing.assert_array_equal, restored, dict(variables))
  with pytest.raises(ValueError, match='already holds a best/ checkpoint'):
    commands.write_converted_workdir(config, variables, str(tmp_path / 'run'))


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_cli_converts_and_evaluate_reports_accuracy(tmp_path, data_config, sample_params):
  """Round trip: torch state_dict -> converter CLI -> main.py --mode=evaluate on the sample."""
  num_classes = sample_params['num_classes']
  state_dict = randomize(OriginalVGG(11)).state_dict()
  state_dict['fc_layers.4.weight'] = torch.randn(num_classes, HIDDEN) * 0.1
  state_dict['fc_layers.4.bias'] = torch.zeros(num_classes)
  torch.save(state_dict, tmp_path / 'vgg11.pt')
  overrides = [f'--config.model.width={WIDTH}', f'--config.model.hidden_units={HIDDEN}',
               f'--config.data_source={data_config.data_source}',
               f'--config.data_dir={data_config.data_dir}', '--config.eval_batch_size=16']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  converted = subprocess.run(
      [sys.executable, '-m', 'vgg_flax.convert', f'--state_dict={tmp_path / "vgg11.pt"}',
       '--config=configs/vgg11.py', f'--workdir={tmp_path / "run"}', *overrides],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert converted.returncode == 0, converted.stderr[-2000:]
  assert json.loads(converted.stdout.strip().splitlines()[-1])['num_classes'] == num_classes
  evaluated = subprocess.run(
      [sys.executable, 'main.py', '--mode=evaluate', '--config=configs/vgg11.py',
       f'--workdir={tmp_path / "run"}', *overrides],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  results = json.loads((tmp_path / 'run' / 'eval_results.json').read_text())
  assert results['num_images'] == num_classes * sample_params['val_per_class']
  assert 0.0 <= results['accuracy'] <= 1.0 and np.isfinite(results['loss'])


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_cli_reports_a_wrong_depth_in_one_line(tmp_path):
  torch.save(randomize(OriginalVGG(13)).state_dict(), tmp_path / 'vgg13.pt')
  result = subprocess.run(
      [sys.executable, '-m', 'vgg_flax.convert', f'--state_dict={tmp_path / "vgg13.pt"}',
       '--config=configs/vgg11.py', f'--workdir={tmp_path / "run"}',
       f'--config.model.width={WIDTH}', f'--config.model.hidden_units={HIDDEN}'],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 2
  assert 'Traceback' not in result.stderr
  assert 'is this a depth-13 model?' in result.stderr
  assert not (tmp_path / 'run').exists()
