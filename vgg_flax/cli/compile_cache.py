"""Process-level setup: the persistent compilation cache and the time to the first step.

`main.py` imports this module first thing, so its start time counts the imports; it imports
no JAX at import time. `enable_compilation_cache()` runs once the config is known.
"""

import os
import pathlib
import stat
import time

from absl import logging

from vgg_flax.errors import ConfigError

# When `main.py` (or whoever imported this module first) started, for the startup log line.
_START = time.perf_counter()
_JAX_CACHE_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'
# Under the user's cache folder ($XDG_CACHE_HOME, else ~/.cache) when the config names none.
DEFAULT_SUBFOLDER = ('vgg_flax', 'jax')

# No XLA CPU flag made whole train or eval steps faster, measured side by side
# (`python -m benchmarks.throughput`, VGG-11, 64 px, fp32, train / eval img/s against the default on
# the 2-core AMD EPYC Zen 5 of docs/performance.md): oneDNN custom call 1.00x / 0.96x, XNNPACK
# fusion 1.01x / 0.94x, YNNPACK fusion 0.90x / 1.17x (noise-level). So none is set; the
# prototype's +10-25% for oneDNN was on an Intel Xeon with AMX: re-measure there first.


def seconds_since_start() -> float:
  """Seconds since this module was imported (first thing in `main.py`)."""
  return time.perf_counter() - _START


def default_cache_dir() -> pathlib.Path:
  """The user's own cache folder for compiled steps: `$XDG_CACHE_HOME/vgg_flax/jax`."""
  base = os.environ.get('XDG_CACHE_HOME') or '~/.cache'
  return pathlib.Path(base).expanduser().absolute().joinpath(*DEFAULT_SUBFOLDER)


def compilation_cache_dir(config) -> pathlib.Path | None:
  """The persistent cache folder a config asks for, or None when it is turned off.

  `compilation_cache_dir` '' means `JAX_COMPILATION_CACHE_DIR` when that is set (the tests
  share one cache this way), else the user's private `default_cache_dir()`: a folder beside
  the workdir would be shared with whoever else can write there (`/tmp`, a team disk).
  """
  if not config.compilation_cache:
    return None
  folder = config.compilation_cache_dir or os.environ.get(_JAX_CACHE_VARIABLE, '')
  if folder:
    return pathlib.Path(folder).expanduser().absolute()
  return default_cache_dir()


def make_private_folder(folder: pathlib.Path) -> None:
  """Creates the cache folder (mode 0700) if needed, and refuses one that others control.

  JAX loads compiled native code from this folder and runs it, so whoever can write there
  can run code in this process: a folder writable by the group or others, or owned by
  another user, is refused.

  Raises:
    ConfigError: one line naming the folder and how to go on.
  """
  folder.parent.mkdir(parents=True, exist_ok=True)
  try:
    folder.mkdir(mode=0o700)
  except FileExistsError:
    pass
  status = folder.lstat()
  remedy = ('JAX runs the compiled code it finds there, so anyone who can write to it could '
            'run code in this process: use a folder of your own (--config.compilation_cache_dir'
            '), or --config.compilation_cache=False.')
  if not stat.S_ISDIR(status.st_mode):
    raise ConfigError(f'compilation cache folder {folder} is not a folder (a link or a file); '
                      + remedy)
  if status.st_uid != os.getuid():
    raise ConfigError(f'compilation cache folder {folder} is owned by uid {status.st_uid}, '
                      f'not by you (uid {os.getuid()}); ' + remedy)
  if status.st_mode & 0o022:
    raise ConfigError(f'compilation cache folder {folder} is writable by others (mode '
                      f'{stat.S_IMODE(status.st_mode):o}); chmod 700 it if it is yours. '
                      + remedy)


def enable_compilation_cache(config) -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache, so a restart loads its compiled steps.

  Call before anything is compiled. The cache key covers the program, the compiler options,
  the device kind and the JAX version, so a changed config or host compiles afresh.

  Returns:
    The cache folder, or None when `config.compilation_cache` is False.

  Raises:
    ConfigError: the folder is not private to this user (`make_private_folder`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  folder = compilation_cache_dir(config)
  if folder is None:
    logging.info('Persistent compilation cache off (config.compilation_cache=False).')
    return None
  make_private_folder(folder)
  jax.config.update('jax_compilation_cache_dir', str(folder))
  # Every executable, not only those over JAX's 1 s default: a restart should compile nothing.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  logging.info('Persistent compilation cache in %s.', folder)
  return folder


class LogTimeToFirstStep:
  """A train-loop hook that logs, once, how long the process took to reach its first step."""

  def __init__(self):
    self.done = False

  def __call__(self, step: int) -> None:
    if not self.done:
      self.done = True
      logging.info('First train step (step %d) %.1f s after start (imports, data, '
                   'compilation).', step, seconds_since_start())
