"""The project's default config with a benchmark's model and batch fields.

The benchmarks time the training step with exactly the defaults training uses.
"""

from configs import default


def get_config(*, depth: int, width: int = 64, hidden_units: int = 4096, **fields):
  """The default config with a benchmark's model and top-level fields (batch sizes, ...)."""
  config = default.get_config()
  config.model.depth = depth
  config.model.width = width
  config.model.hidden_units = hidden_units
  for name, value in fields.items():
    setattr(config, name, value)
  return config
