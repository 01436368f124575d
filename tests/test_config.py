"""Config files and the checks that run before anything compiles."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from configs import default
from vgg_flax.workdir import config as configuration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {'vgg11': (11, False), 'vgg13': (13, False), 'vgg16': (16, False),
           'vgg16_c11': (16, True), 'vgg19': (19, False), 'smoke': (11, False),
           'vgg16_sgd': (16, False)}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_files_choose_their_model_and_validate(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  assert (config.model.depth, config.model.conv1x1) == CONFIGS[name]
  configuration.validate_config(config)


def test_defaults_follow_the_seed():
  config = default.get_config()
  assert (config.optimizer, config.learning_rate, config.batch_size, config.num_epochs) == (
      'adam', 1e-3, 64, 50)
  assert (config.early_stopping.patience, config.image_size, config.augment.flip) == (6, 64, True)
  assert (config.model.batch_norm, config.model.pool_type, tuple(config.model.pool_size),
          config.model.dropout_rate) == (True, 'max', (2, 2), 0.0)


# Each rule of validate_config, with its exact message: tests/test_validate_config.py.


def test_workdir_with_another_model_is_refused(tmp_path):
  saved = default.get_config()
  (tmp_path / 'config.json').write_text(json.dumps(configuration.config_to_dict(saved)))
  config = default.get_config()
  configuration.check_workdir_compatible(config, tmp_path)  # Same model: fine.
  config.learning_rate = 0.5  # Not a model field: resuming with it is allowed.
  configuration.check_workdir_compatible(config, tmp_path)
  config.model.depth = 11
  with pytest.raises(configuration.ConfigError, match='model.depth: 16 in the workdir, 11 now'):
    configuration.check_workdir_compatible(config, tmp_path)


def run_main(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, 'main.py', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def assert_one_line_error(result, message):
  assert result.returncode == 2, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert [line for line in result.stderr.splitlines() if line.startswith('error:')] == [
      f'error: {message}']


@pytest.mark.slow
def test_main_exits_2_with_one_line_for_a_bad_value(tmp_path):
  result = run_main('--config=configs/vgg16.py', '--config.model.depth=12',
                    f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, 'model.depth=12 is not one of 11, 13, 16, 19.')
  assert not (tmp_path / 'run').exists()  # Nothing was written for a config that cannot run.


@pytest.mark.slow
def test_main_rejects_a_misspelt_override(tmp_path):
  result = run_main('--config=configs/vgg16.py', '--config.model.dept=12',
                    f'--workdir={tmp_path / "run"}')
  assert_one_line_error(result, "no field 'model.dept'; did you mean 'model.depth'?")
  assert not (tmp_path / 'run').exists()
