"""`config.init_from` / `init_head`: a run starts from PyTorch weights or another workdir."""

import json
import logging
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import torch

from configs import default
from configs import vgg16_finetune
from tests import torch_models
from vgg_flax.workdir import config as configuration
from vgg_flax import convert
from vgg_flax.core import factory
from vgg_flax.train import init_from as initialization
from vgg_flax.core import models
from vgg_flax import train
from vgg_flax.interop import commands
from vgg_flax.workdir import files
from vgg_flax.workdir import config as run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HIDDEN, CLASSES = 8, 32, 4


def tiny_config(**model):
  config = default.get_config()
  config.model.depth = 11
  config.model.width = WIDTH
  config.model.hidden_units = HIDDEN
  config.model.update(model)
  return config


def fresh_state(config, num_classes=CLASSES):
  """A newly initialised, replicated train state (Adam) for the config's model."""
  config = config.copy_and_resolve_references()
  config.seed, config.image_size = 7, 32
  compiled, state = factory.create(config, num_classes=num_classes, steps_per_epoch=10)
  return compiled.model, state, compiled.state_sharding


def save_original(path, num_classes, depth=11, seed=0):
  torch.manual_seed(seed)
  model = torch_models.randomise_batch_norms(torch_models.OriginalVGG(
      depth, width=WIDTH, hidden=HIDDEN, num_classes=num_classes))
  torch.save(model.state_dict(), path)
  return {k: v.numpy() for k, v in model.state_dict().items()}


def as_numpy(tree):
  return jax.tree.map(np.asarray, tree)


def assert_trees_equal(got, want):
  jax.tree.map(np.testing.assert_array_equal, as_numpy(got), as_numpy(want))


@pytest.fixture
def info_logs(caplog):
  caplog.set_level(logging.INFO)
  return caplog


@pytest.mark.parametrize('source_classes, init_head, head_kept, message', [
    (10, True, False, 'head re-initialised: 10 -> 4 classes'),
    (CLASSES, True, True, None),
    (CLASSES, False, False, 'head re-initialised: 4 -> 4 classes (init_head=False)'),
])
def test_state_dict_start(tmp_path, info_logs, source_classes, init_head, head_kept, message):
  path = tmp_path / 'original.pt'
  state_dict = save_original(path, source_classes)
  config = tiny_config(pool_type='avg')
  config.init_from, config.init_head = str(path), init_head
  model, state, state_sharding = fresh_state(config)
  started = initialization.start_from(config, model, state, state_sharding)

  want = convert.from_torch_state_dict(state_dict, model.clone(num_classes=source_classes))
  want_params = dict(want['params'])
  if not head_kept:
    want_params['fc3'] = state.params['fc3']
  assert_trees_equal(started.params, want_params)
  assert_trees_equal(started.batch_stats, want['batch_stats'])
  # A fresh optimizer: Adam's moments are zero, its count and the step are 0.
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(as_numpy(started.opt_state)))
  assert int(started.step) == 0
  head_logs = [r.getMessage() for r in info_logs.records if 'head re-init' in r.getMessage()]
  assert head_logs == ([message] if message else [])


def test_torchvision_layout_into_the_finetune_recipe(tmp_path, info_logs):
  """vgg16_finetune at a tiny width: torchvision's names, 7x7 average pool, 1000 classes."""
  config = vgg16_finetune.get_config()
  config.model.width, config.model.hidden_units = WIDTH, HIDDEN
  torch.manual_seed(0)
  source = torch_models.randomise_batch_norms(torch_models.TorchvisionVGG(
      16, width=WIDTH, hidden=HIDDEN, num_classes=1000))
  config.init_from = str(tmp_path / 'vgg16_bn.pth')
  torch.save(source.state_dict(), config.init_from)
  model, state, state_sharding = fresh_state(config)
  started = initialization.start_from(config, model, state, state_sharding)

  want = convert.from_torch_state_dict(source.state_dict(), model.clone(num_classes=1000))
  assert started.params['fc1']['kernel'].shape == (8 * WIDTH * 7 * 7, HIDDEN)
  assert started.params['fc3']['kernel'].shape == (HIDDEN, CLASSES)
  for name in want['params']:
    if name != 'fc3':
      assert_trees_equal(started.params[name], want['params'][name])
  assert any(r.getMessage() == 'head re-initialised: 1000 -> 4 classes'
             for r in info_logs.records)


def test_workdir_start_uses_its_best_checkpoint(tmp_path):
  config = tiny_config()
  model, state, _ = fresh_state(config)
  source = as_numpy({'params': state.params, 'batch_stats': state.batch_stats})
  source = jax.tree.map(lambda x: x + 0.5, source)  # Unlike any fresh initialisation.
  commands.write_converted_workdir(config, source, str(tmp_path / 'source'))
  config.init_from = str(tmp_path / 'source')
  model, state, state_sharding = fresh_state(config)
  started = initialization.start_from(config, model, state, state_sharding)
  assert_trees_equal(started.params, source['params'])
  assert_trees_equal(started.batch_stats, source['batch_stats'])


def test_workdir_of_another_network_is_one_line_naming_the_field(tmp_path):
  config = tiny_config()
  model, state, _ = fresh_state(config)
  commands.write_converted_workdir(
      config, as_numpy({'params': state.params, 'batch_stats': state.batch_stats}),
      str(tmp_path / 'narrow'))
  wide = tiny_config()
  wide.model.width = 2 * WIDTH
  wide_model = models.create_model(wide.model, num_classes=CLASSES)
  with pytest.raises(configuration.ConfigError,
                     match=r"holds another network \(model.width=8 there, 16 here\)"):
    initialization.load_variables(str(tmp_path / 'narrow'), wide_model)


@pytest.mark.parametrize('make_source, error', [
    (lambda tmp: tmp / 'missing.pt', 'does not exist'),
    (lambda tmp: tmp, 'holds no best/ checkpoint'),
    (lambda tmp: (save_original(tmp / 'vgg13.pt', 10, depth=13), tmp / 'vgg13.pt')[1],
     'state_dict has 10 conv layers but VGG depth 11 has 8: is this a depth-13 model'),
])
def test_bad_sources_are_one_line_config_errors(tmp_path, make_source, error):
  source = str(make_source(tmp_path))
  model = models.create_model(tiny_config().model, num_classes=CLASSES)
  with pytest.raises(configuration.ConfigError) as raised:
    initialization.load_variables(source, model)
  message = str(raised.value)
  assert error in message and f'init_from={source!r}' in message and '\n' not in message


@pytest.mark.slow  # Trains end to end: two runs.
def test_checkpoint_wins_over_init_from(data_config, tmp_path, info_logs, monkeypatch):
  data_config.num_epochs = 1
  data_config.steps_per_epoch = 1
  train.train_and_evaluate(data_config, str(tmp_path))

  def must_not_run(*args):
    raise AssertionError('init_from was read although the workdir has a checkpoint')

  monkeypatch.setattr(initialization, 'start_from', must_not_run)
  data_config.init_from = str(tmp_path / 'some.pt')
  state = train.train_and_evaluate(data_config, str(tmp_path))
  assert int(state.step) == 1
  assert [row['epoch'] for row in files.read_history(tmp_path / 'history.csv')] == [1]
  assert any(r.getMessage().startswith(f'init_from={tmp_path / "some.pt"} not used: the '
                                       "workdir's checkpoint wins")
             for r in info_logs.records)


def test_config_rules_for_the_new_fields():
  config = tiny_config()
  configuration.validate_config(config)
  config.model.bn_running_var = 'exact'
  with pytest.raises(configuration.ConfigError, match="model.bn_running_var='exact'"):
    configuration.validate_config(config)
  # A config.json edited by hand is not type-checked by ml_collections.
  edited = configuration.config_to_dict(tiny_config())
  edited['init_head'] = 'no'
  with pytest.raises(configuration.ConfigError, match="init_head='no' must be True or False"):
    configuration.validate_config(ml_collections.ConfigDict(edited))


def test_workdirs_from_before_the_new_fields_load_and_resume(tmp_path):
  """An old config.json has no model.bn_running_var, init_from or init_head."""
  config = tiny_config()
  saved = configuration.config_to_dict(config)
  for field in ('init_from', 'init_head'):
    del saved[field]
  del saved['model']['bn_running_var']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  configuration.check_workdir_compatible(config, tmp_path)  # Resumes: no error.
  old = run_config.read_config(tmp_path)
  configuration.validate_config(old)
  assert models.create_model(old.model, num_classes=CLASSES).bn_running_var == 'unbiased'
  config.model.depth = 13  # Fields that define the variables are still compared.
  with pytest.raises(configuration.ConfigError, match='model.depth: 11 in the workdir, 13 now'):
    configuration.check_workdir_compatible(config, tmp_path)


def test_finetune_config_has_torchvision_vgg16_bn_shapes():
  """torchvision's vgg16_bn, written out: 13 convs 64..512, Linear 25088 -> 4096 -> 4096."""
  config = vgg16_finetune.get_config()
  configuration.validate_config(config)
  model = models.create_model(config.model, num_classes=1000)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3),
                                               np.float32))['params']
  widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  convs = [shapes[name]['kernel'].shape for name in sorted(shapes) if name.endswith('_conv')]
  assert convs == [(3, 3, cin, cout) for cin, cout in zip([3] + widths[:-1], widths)]
  assert [shapes[f'fc{i}']['kernel'].shape for i in (1, 2, 3)] == [
      (512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]
  assert (config.model.pool_type, config.optimizer, config.schedule) == ('avg', 'sgd', 'cosine')


def run_main(tmp_path, *overrides):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, 'main.py', '--config=configs/default.py',
       f'--workdir={tmp_path / "run"}', '--config.model.depth=11',
       f'--config.model.width={WIDTH}', f'--config.model.hidden_units={HIDDEN}',
       '--config.image_size=32', '--config.batch_size=16', '--config.eval_batch_size=16',
       '--config.num_epochs=1', '--config.steps_per_epoch=2', '--config.progress_bar=False',
       *overrides],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_main_fine_tunes_from_a_torchvision_file(tmp_path, sample_folder, tfds_data_dir):
  torch.manual_seed(0)
  source = torch_models.TorchvisionVGG(11, width=WIDTH, hidden=HIDDEN, num_classes=10, pool=2)
  torch.save(source.state_dict(), tmp_path / 'tv.pth')
  result = run_main(tmp_path, f'--config.data_source={sample_folder}',
                    f'--config.data_dir={tfds_data_dir}', f'--config.init_from={tmp_path}/tv.pth',
                    '--config.model.pool_type=avg')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'head re-initialised: 10 -> 4 classes' in result.stderr
  history = files.read_history(tmp_path / 'run' / 'history.csv')
  assert [row['epoch'] for row in history] == [1]
  assert json.loads((tmp_path / 'run' / 'config.json').read_text())['init_from'] == \
      f'{tmp_path}/tv.pth'


@pytest.mark.slow
def test_main_reports_a_backbone_mismatch_in_one_line(tmp_path, sample_folder, tfds_data_dir):
  save_original(tmp_path / 'vgg13.pt', 10, depth=13)
  result = run_main(tmp_path, f'--config.data_source={sample_folder}',
                    f'--config.data_dir={tfds_data_dir}',
                    f'--config.init_from={tmp_path}/vgg13.pt')
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'is this a depth-13 model?' in errors[0]
  # Nothing was trained or saved: no checkpoint, no history.
  assert os.listdir(tmp_path / 'run' / 'checkpoints') == []
  assert not os.path.exists(tmp_path / 'run' / 'history.csv')
