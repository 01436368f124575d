"""Process-level setup: the persistent compilation cache and the time to the first step.

`main.py` imports this module first thing, so its start time counts the imports; it imports
no JAX at import time. `enable_compilation_cache()` runs once the config and workdir are known.
"""

import os
import pathlib
import time

from absl import logging

# When `main.py` (or whoever imported this module first) started, for the startup log line.
_START = time.perf_counter()
# Where the compiled executables go when `compilation_cache_dir` is '': beside the workdirs.
CACHE_DIR_NAME = '.jax_cache'
_JAX_CACHE_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'

# No XLA CPU flag made whole train or eval steps faster, measured side by side
# (`python -m benchmarks.throughput`, VGG-11, 64 px, fp32, train / eval img/s against the default on
# the 2-core AMD EPYC Zen 5 of docs/performance.md): oneDNN custom call 1.00x / 0.96x, XNNPACK
# fusion 1.01x / 0.94x, YNNPACK fusion 0.90x / 1.17x (noise-level). So none is set; the
# prototype's +10-25% for oneDNN was on an Intel Xeon with AMX: re-measure there first.


def seconds_since_start() -> float:
  """Seconds since this module was imported (first thing in `main.py`)."""
  return time.perf_counter() - _START


def compilation_cache_dir(config, workdir: str | pathlib.Path) -> pathlib.Path | None:
  """The persistent cache folder a config asks for, or None when it is turned off.

  Args:
    config: a config with `compilation_cache` and `compilation_cache_dir`.
    workdir: the run's workdir; the default folder is `<workdir's parent>/.jax_cache`, so runs
      under one `runs/` share their compiled steps.
  """
  if not config.compilation_cache:
    return None
  folder = config.compilation_cache_dir
  if folder:
    return pathlib.Path(folder).expanduser().absolute()
  return pathlib.Path(workdir).absolute().parent / CACHE_DIR_NAME


def enable_compilation_cache(config, workdir: str | pathlib.Path) -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache, so a restart loads its compiled steps.

  Call before anything is compiled. The cache key covers the program, the compiler options,
  the device kind and the JAX version, so a changed config or host compiles afresh. With
  `compilation_cache_dir` '', a `JAX_COMPILATION_CACHE_DIR` in the environment is the folder.

  Returns:
    The cache folder, or None when `config.compilation_cache` is False.
  """
  import jax  # pylint: disable=g-import-not-at-top
  folder = compilation_cache_dir(config, workdir)
  if folder is None:
    logging.info('Persistent compilation cache off (config.compilation_cache=False).')
    return None
  if not config.compilation_cache_dir and os.environ.get(_JAX_CACHE_VARIABLE):
    # JAX's own variable, when set, replaces the default folder (the tests share one).
    folder = pathlib.Path(os.environ[_JAX_CACHE_VARIABLE]).expanduser().absolute()
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
