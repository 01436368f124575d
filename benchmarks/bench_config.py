"""The project's default config for the benchmarks, with or without ml_collections.

A fresh GPU host may carry only JAX, flax, optax, orbax, PyTorch and numpy. There
`configs/default.py` is executed with a plain attribute dict standing in for
`ml_collections.ConfigDict`, so the benchmarks time the training step with exactly the
defaults that training uses.
"""

import importlib.util
import pathlib
import sys
import types

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parent.parent / 'configs' / 'default.py'


class PlainConfig(dict):
  """A dict with attribute access: all that the jitted steps read of a `ConfigDict`."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError as error:
      raise AttributeError(name) from error

  def __setattr__(self, name, value):
    self[name] = value


def _load_default_with(config_class: type):
  """`configs/default.py`'s `get_config()` with `ml_collections.ConfigDict = config_class`."""
  stand_in = types.ModuleType('ml_collections')
  stand_in.ConfigDict = config_class
  # A field of any type (`cache`: True, False or 'auto') is its default value here.
  stand_in.FieldReference = lambda default, field_type=None: default
  saved = sys.modules.get('ml_collections')
  sys.modules['ml_collections'] = stand_in
  try:
    spec = importlib.util.spec_from_file_location('_plain_default_config', DEFAULT_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
  finally:
    if saved is None:
      del sys.modules['ml_collections']
    else:
      sys.modules['ml_collections'] = saved


def default_config():
  """`configs.default.get_config()`; a `PlainConfig` copy of it without ml_collections."""
  try:
    from configs import default  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _load_default_with(PlainConfig)
  return default.get_config()


def get_config(*, depth: int, width: int = 64, hidden_units: int = 4096, **fields):
  """The default config with a benchmark's model and top-level fields (batch sizes, ...)."""
  config = default_config()
  config.model.depth = depth
  config.model.width = width
  config.model.hidden_units = hidden_units
  for name, value in fields.items():
    setattr(config, name, value)
  return config
