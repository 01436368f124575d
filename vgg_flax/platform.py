"""XLA flags the project sets for itself when it runs on the CPU.

Must run before JAX initialises its backend (XLA reads `XLA_FLAGS` once), so it imports no
JAX: `main.py` and `benchmarks/throughput.py` call `configure_cpu_flags()` first thing.
"""

import importlib.util
import os

# Measured side by side on a 2-core CPU (see benchmarks/README numbers in the README):
# each flag is kept only if it made whole train or eval steps faster there.
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
