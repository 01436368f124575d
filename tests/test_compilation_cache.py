"""The persistent compilation cache: where it goes, off switch, a restart hits it; startup log."""

import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from configs import default
from vgg_flax.workdir import config as configuration
from vgg_flax.cli import compile_cache as platform

REPO = pathlib.Path(__file__).resolve().parent.parent

# Compiles a narrow VGG's train step with the cache of `config` on; prints the cache events.
COMPILE_SCRIPT = textwrap.dedent('''
    import sys
    import jax
    from jax import monitoring
    from configs import default
    from vgg_flax.cli import compile_cache as platform
    from vgg_flax.core import factory
    events = []
    monitoring.register_event_listener(lambda name, **_: events.append(name))
    config = default.get_config()
    config.image_size, config.batch_size = 32, 8
    config.model.update(depth=11, width=8, hidden_units=16)
    config.compilation_cache_dir = sys.argv[2]
    print('FOLDER', platform.enable_compilation_cache(config))
    compiled, state = factory.create(config, num_classes=10, steps_per_epoch=10)
    compiled.train_step.lower(
        state, {'image': jax.ShapeDtypeStruct((8, 32, 32, 3), 'uint8'),
                'label': jax.ShapeDtypeStruct((8,), 'int32')}).compile()
    print('HITS', events.count('/jax/compilation_cache/cache_hits'))
    print('MISSES', events.count('/jax/compilation_cache/cache_misses'))
''')


def test_default_folder_is_the_users_private_cache(monkeypatch, tmp_path):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert platform.compilation_cache_dir(default.get_config()) == tmp_path / 'xdg/vgg_flax/jax'
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert platform.compilation_cache_dir(default.get_config()) == (
      tmp_path / 'home/.cache/vgg_flax/jax')


def test_folder_is_configurable_and_expands_home(monkeypatch, tmp_path):
  monkeypatch.setenv('HOME', str(tmp_path))
  config = default.get_config()
  config.compilation_cache_dir = '~/.cache/vgg_flax'
  assert platform.compilation_cache_dir(config) == tmp_path / '.cache' / 'vgg_flax'


def test_a_new_folder_is_made_private_and_a_shared_one_refused(tmp_path):
  folder = tmp_path / 'new' / 'cache'
  platform.make_private_folder(folder)
  assert folder.stat().st_mode & 0o777 == 0o700
  folder.chmod(0o775)
  with pytest.raises(configuration.ConfigError, match=r'writable by others \(mode 775\)'):
    platform.make_private_folder(folder)


def test_cache_off_leaves_jax_alone(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.compilation_cache = False
  before = jax.config.jax_compilation_cache_dir
  assert platform.enable_compilation_cache(config) is None
  assert jax.config.jax_compilation_cache_dir == before


def test_configs_saved_before_the_fields_existed_get_the_defaults(monkeypatch, tmp_path):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  old = configuration.migrate({'batch_size': 8, 'model': {}})
  assert platform.compilation_cache_dir(old) == tmp_path / 'vgg_flax' / 'jax'


@pytest.mark.parametrize('field, value, message', [
    ('compilation_cache', 'yes', "compilation_cache='yes' must be True or False"),
    ('compilation_cache_dir', None, 'compilation_cache_dir=None must be a folder path'),
])
def test_bad_cache_fields_are_config_errors(field, value, message):
  config = default.get_config()
  with config.ignore_type():
    config[field] = value
  with pytest.raises(configuration.ConfigError, match=message):
    configuration.validate_config(config)


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_a_restart_loads_the_compiled_step_from_the_cache(tmp_path):
  """The first process compiles and writes the cache; the second finds its steps there."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  cache = tmp_path / 'cache'

  def start():
    result = subprocess.run([sys.executable, '-c', COMPILE_SCRIPT, str(tmp_path / 'w'),
                             str(cache)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(line.split(' ', 1) for line in result.stdout.splitlines())

  first = start()
  assert first['FOLDER'] == str(cache)
  assert int(first['HITS']) == 0 and int(first['MISSES']) >= 2  # Init and train step.
  written = sorted(p.name for p in cache.iterdir())
  assert len(written) >= 2
  second = start()
  assert int(second['HITS']) == int(first['MISSES']) and int(second['MISSES']) == 0
  assert sorted(p.name for p in cache.iterdir()) == written


def test_time_to_first_step_is_logged_once(caplog, monkeypatch):
  # As if the process had started 12.3 s ago.
  monkeypatch.setattr(platform, '_START', time.perf_counter() - 12.3)
  hook = platform.LogTimeToFirstStep()
  with caplog.at_level(logging.INFO):
    hook(1)
    hook(2)
  lines = [r.getMessage() for r in caplog.records if 'First train step' in r.getMessage()]
  assert len(lines) == 1 and lines[0].startswith('First train step (step 1) ')
  seconds = float(lines[0].split(') ')[1].split(' s after')[0])
  assert 12.3 <= seconds <= 12.5  # Logged with one decimal, a moment after the start.
