"""`JAX_COMPILATION_CACHE_DIR` in the environment: it replaces the default cache folder
(the user's private one), not one the config names. The tests share one cache this way."""

import jax

from configs import default
from vgg_flax.cli import compile_cache as platform


def enabled_folder(monkeypatch, config):
  """The folder `enable_compilation_cache` hands JAX (recorded; the session's is kept)."""
  updates = {}
  monkeypatch.setattr(jax.config, 'update', lambda name, value: updates.update({name: value}))
  folder = platform.enable_compilation_cache(config)
  assert updates == {'jax_compilation_cache_dir': str(folder),
                     'jax_persistent_cache_min_compile_time_secs': 0.0}
  return folder


def test_the_variable_replaces_the_default_folder(monkeypatch, tmp_path):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'shared'))
  folder = enabled_folder(monkeypatch, default.get_config())
  assert folder == tmp_path / 'shared'


def test_without_the_variable_the_folder_is_the_users_private_cache(monkeypatch, tmp_path):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  folder = enabled_folder(monkeypatch, default.get_config())
  assert folder == tmp_path / 'xdg' / 'vgg_flax' / 'jax'


def test_a_folder_in_the_config_wins_over_the_variable(monkeypatch, tmp_path):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'shared'))
  config = default.get_config()
  config.compilation_cache_dir = str(tmp_path / 'mine')
  assert enabled_folder(monkeypatch, config) == tmp_path / 'mine'
