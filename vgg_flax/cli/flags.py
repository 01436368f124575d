"""The command line of main.py: each mode's default config and one-line override errors.

ml_collections' `config_flags` loads the config file and applies the `--config.<field>=value`
overrides while absl parses the flags, before `main()` runs, and a misspelt field there is a
traceback. `parse_flags` is main.py's flag parser instead: it picks the mode's default config
when `--config` is absent, checks every override's field against the chosen config first, and
turns absl's value errors into a `ConfigError` that names the field and the type it wants.
"""

import difflib
import importlib.util
import pathlib
import re
from typing import Sequence

from absl import flags
import ml_collections

from vgg_flax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs'
# The config each mode uses when --config is not given (a path relative to the repository).
DEFAULT_CONFIGS = {
    'train': 'configs/smoke.py',
    'evaluate': 'configs/smoke.py',
    'predict': 'configs/smoke.py',
    'predict_ensemble': 'configs/ensemble.py',
    'summary': 'configs/ensemble.py',
}
MODES = tuple(DEFAULT_CONFIGS)
_TYPE_NAMES = {bool: 'a bool (True or False)', int: 'an int', float: 'a number', str: 'a string',
               tuple: "a tuple, e.g. '(2, 2)'", list: "a list, e.g. '[1, 2]'",
               ml_collections.ConfigDict: 'a dict of fields'}


def mode_help() -> str:
  """`--mode`'s help: the modes and the config each uses without --config."""
  return 'What to do; without --config, ' + ', '.join(
      f'{mode} uses {path}' for mode, path in DEFAULT_CONFIGS.items()) + '.'


def default_configs_help() -> str:
  """`--config`'s default as --help shows it: each default config and its modes."""
  modes_of = {}
  for mode, path in DEFAULT_CONFIGS.items():
    modes_of.setdefault(path, []).append(mode)
  return '; '.join(f'{path} with --mode={"|".join(modes)}' for path, modes in modes_of.items())


def find_mode(argv: Sequence[str], default: str = 'train') -> str:
  """The value of --mode in argv, `default` when absent (absl checks the value later)."""
  values = flags.FlagValues()
  flags.DEFINE_string('mode', default, '', flag_values=values)
  try:
    values(list(argv), known_only=True)
  except flags.Error:
    return default
  return values.mode


def _config_flag_index(argv: Sequence[str]) -> int:
  """Where --config (not an override) is in argv, as ml_collections finds it; -1 if absent."""
  for i, arg in enumerate(argv):
    if re.match(r'^--?config(=|$)', arg):
      return i
  return -1


def config_file_of(argv: Sequence[str]) -> str:
  """The value of --config in argv."""
  index = _config_flag_index(argv)
  arg = argv[index]
  if '=' in arg:
    return arg.split('=', 1)[1]
  if index + 1 >= len(argv):
    raise ConfigError('--config needs a config file, e.g. '
                                    '--config=configs/vgg16.py.')
  return argv[index + 1]


def with_default_config(argv: Sequence[str]) -> list[str]:
  """argv with `--config=<the mode's default>` inserted first when --config is absent."""
  argv = list(argv)
  if _config_flag_index(argv) >= 0:
    return argv
  default = REPO / DEFAULT_CONFIGS.get(find_mode(argv), DEFAULT_CONFIGS['train'])
  return [argv[0], f'--config={default}', *argv[1:]]


def shown_path(path: str) -> str:
  """A config path as messages show it: relative to the repository when inside it."""
  try:
    return str(pathlib.Path(path).resolve().relative_to(REPO))
  except ValueError:
    return path


def override_names(argv: Sequence[str]) -> list[str]:
  """The fields that `--config.<field>=value` (or `--noconfig.<field>`) overrides name."""
  names = []
  for arg in argv:
    match = re.match(r'^--?(?:no)?config\.([^=]+)', arg)
    if match:
      names.append(match.group(1))
  return names


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (`path` or `path:argument`, as ml_collections takes)."""
  file_name, _, argument = path.partition(':')
  file_path = pathlib.Path(file_name)
  if not file_path.is_file():
    raise ConfigError(
        f'config file {file_name} does not exist; the configs are in {CONFIG_DIR} '
        '(e.g. --config=configs/vgg16.py).')
  spec = importlib.util.spec_from_file_location(f'_vgg_flax_config_{file_path.stem}', file_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def field_paths(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, object]:
  """Every field of a config by dotted path (sections included), with its value."""
  paths = {}
  for key, value in config.items():
    paths[prefix + key] = value
    if isinstance(value, ml_collections.ConfigDict):
      paths.update(field_paths(value, f'{prefix}{key}.'))
  return paths


def closest_field(name: str, fields: Sequence[str]) -> str | None:
  """The field whose dotted path is most like `name`, or None when none is close."""
  matches = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.6)
  if not matches:  # A misspelt last part: compare it with the fields of the same section.
    section, _, leaf = name.rpartition('.')
    siblings = {f.rpartition('.')[2]: f for f in fields if f.rpartition('.')[0] == section}
    matches = [siblings[m] for m in difflib.get_close_matches(leaf, list(siblings), n=1)]
  return matches[0] if matches else None


def configs_with_field(name: str, config_dir: pathlib.Path = CONFIG_DIR) -> list[str]:
  """The config files (relative to the repository) that have a field `name`."""
  found = []
  for path in sorted(config_dir.glob('*.py')):
    if path.name == '__init__.py':
      continue
    if name in field_paths(load_config_file(str(path))):
      found.append(str(path.relative_to(config_dir.parent)))
  return found


def unknown_field_message(name: str, config: ml_collections.ConfigDict, config_file: str,
                          config_dir: pathlib.Path = CONFIG_DIR) -> str:
  """One line for an override of a field the config lacks: where it lives, or the closest."""
  elsewhere = configs_with_field(name, config_dir)
  if elsewhere:
    return (f'{config_file} has no field {name!r}; it lives in {" and ".join(elsewhere)} '
            f'(use --config={elsewhere[0]}).')
  suggestion = closest_field(name, [p for p, v in field_paths(config).items()
                                    if not isinstance(v, ml_collections.ConfigDict)])
  if suggestion:
    return f'no field {name!r}; did you mean {suggestion!r}?'
  return (f'no field {name!r} in {config_file}; configs/default.py lists every field with '
          'a one-line comment.')


def check_override_names(names: Sequence[str], config: ml_collections.ConfigDict,
                         config_file: str) -> None:
  """Raises `ConfigError` for the first override of a field that `config` lacks."""
  fields = field_paths(config)
  for name in names:
    if name not in fields:
      raise ConfigError(unknown_field_message(name, config, config_file))


def wanted_type(value: object) -> str:
  """How an error message calls the type of a config value."""
  for kind, description in _TYPE_NAMES.items():
    if isinstance(value, kind):
      return description
  return type(value).__name__


def bad_value_message(error: flags.Error, config: ml_collections.ConfigDict) -> str:
  """absl's error for a flag value, as one line naming the field and the type it wants."""
  text = str(error).splitlines()[0]
  match = re.match(r'^flag --config\.([^=]+)=(.*?): ', text)
  if not match:
    return text
  name, value = match.groups()
  current = field_paths(config).get(name)
  return (f'--config.{name}={value}: {name} takes {wanted_type(current)}, not {value!r} '
          f'(the config has {current!r}).')


def names_jax_flags(argv: Sequence[str]) -> bool:
  """Whether argv sets one of JAX's absl flags (`--jax_...` or `--nojax_...`)."""
  return any(re.match(r'^--?(?:no)?jax_', arg) for arg in argv)


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses main.py's flags; every mistake is a one-line `ConfigError`.

  Args:
    argv: the command line, program name first.
    flag_values: where the flags are defined (`--config` with no default of its own).

  Returns:
    The arguments that are not flags (program name first), as absl's parser returns them.

  Raises:
    ConfigError: a missing config file, an override of a field the config lacks, or a value
      of the wrong type (and any other flag absl refuses).
  """
  # Overrides may come from a --flagfile: check those too (ml_collections expands it as well).
  argv = with_default_config(flag_values.read_flags_from_files(list(argv), force_gnu=False))
  config_file = config_file_of(argv)
  config = load_config_file(config_file)
  check_override_names(override_names(argv), config, shown_path(config_file))
  try:
    return flag_values(argv)
  except flags.Error as error:
    raise ConfigError(bad_value_message(error, config)) from None
