"""XLA flags the project sets for itself when it runs on the CPU.

Must run before JAX initialises its backend (XLA reads `XLA_FLAGS` once), so it imports no
JAX: `main.py` and `benchmarks/throughput.py` call `configure_cpu_flags()` first thing.
"""

import importlib.util
import os

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
