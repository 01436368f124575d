"""Process-level setup: XLA's CPU flags, the persistent compilation cache, the start time.

`main.py` imports this module first thing, before JAX initialises its backend (XLA reads
`XLA_FLAGS` once), so it imports no JAX at import time: `configure_cpu_flags()` runs then,
`enable_compilation_cache()` once the config and workdir are known.
"""

import importlib.util
import os
import pathlib
import time

from absl import logging

# When `main.py` (or whoever imported this module first) started, for the startup log line.
_START = time.perf_counter()
# Where the compiled executables go when `compilation_cache_dir` is '': beside the workdirs.
CACHE_DIR_NAME = '.jax_cache'
_JAX_CACHE_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'

# A flag goes here only if it made whole train or eval steps faster, measured side by side
# (`benchmarks/throughput.py --variant=...`). On the 2-core AMD EPYC (Zen 5, AVX-512 BF16)
# used for the README figures, none did, so the list is empty (VGG-11, 64 px, fp32, train /
# eval img/s against the default in one process):
#   --xla_cpu_experimental_onednn_custom_call=true                      1.00x / 0.96x
#   --xla_cpu_experimental_xnn_fusion_type=individual_convolution,..dot 1.01x / 0.94x
#   --xla_cpu_experimental_ynn_fusion_type=individual_convolution,..dot 0.90x / 1.17x
# (the last is noise-level and splits train against eval). The prototype's +10-25% for the
# oneDNN flag was on an Intel Xeon with AMX; re-measure there before adding it.
CPU_FLAGS: tuple[str, ...] = ()

# Packages whose presence means JAX will pick an accelerator when JAX_PLATFORMS is unset.
_ACCELERATOR_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin',
                        'jax_rocm7_plugin', 'libtpu')


def _accelerator_requested() -> bool:
  """True when JAX will (or is told to) run on a GPU or TPU rather than the CPU."""
  platforms = os.environ.get('JAX_PLATFORMS') or os.environ.get('JAX_PLATFORM_NAME') or ''
  if platforms:
    return platforms.split(',')[0].strip().lower() not in ('cpu', '')
  return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS)


def configure_cpu_flags(flags=CPU_FLAGS) -> str:
  """Appends `flags` to `XLA_FLAGS` on CPU hosts; a flag the user set already wins.

  Args:
    flags: `--name=value` strings.

  Returns:
    The resulting `XLA_FLAGS` (unchanged when an accelerator is requested).
  """
  current = os.environ.get('XLA_FLAGS', '')
  if _accelerator_requested():
    return current
  user_names = {f.split('=')[0] for f in current.split()}
  extra = [f for f in flags if f.split('=')[0] not in user_names]
  if extra:
    os.environ['XLA_FLAGS'] = ' '.join([current] + extra).strip()
  return os.environ.get('XLA_FLAGS', '')


def seconds_since_start() -> float:
  """Seconds since this module was imported (first thing in `main.py`)."""
  return time.perf_counter() - _START


def compilation_cache_dir(config, workdir: str | pathlib.Path) -> pathlib.Path | None:
  """The persistent cache folder a config asks for, or None when it is turned off.

  Args:
    config: a config with `compilation_cache` and `compilation_cache_dir` (configs older than
      those fields get the defaults: on, beside the workdir).
    workdir: the run's workdir; the default folder is `<workdir's parent>/.jax_cache`, so runs
      under one `runs/` share their compiled steps.
  """
  if not config.get('compilation_cache', True):
    return None
  folder = config.get('compilation_cache_dir', '')
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
  if not config.get('compilation_cache_dir', '') and os.environ.get(_JAX_CACHE_VARIABLE):
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
