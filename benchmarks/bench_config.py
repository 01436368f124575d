"""What every benchmark shares: the default config with its fields, and absl flag parsing.

The benchmarks time the training step with exactly the defaults training uses. Each
benchmark defines its flags on a `flags.FlagValues` of its own (several run in one process:
the tests, `checkpoint_overlap` over `throughput`), and `parse_flags` reads argv into it.
"""

import sys
from typing import Sequence

from absl import flags

from configs import default


def define_model_flags(values: flags.FlagValues, *, depth: int,
                       image_size: bool = True) -> None:
  """The model and batch flags most benchmarks share: depth, width, hidden units, batch."""
  flags.DEFINE_integer('depth', depth, 'VGG depth: 11, 13, 16 or 19.', flag_values=values)
  flags.DEFINE_integer('width', 64, 'First-stage channels.', flag_values=values)
  flags.DEFINE_integer('hidden_units', 4096, 'Width of the two hidden dense layers.',
                       flag_values=values)
  if image_size:
    flags.DEFINE_integer('image_size', 64, 'Side the model sees.', flag_values=values)
  flags.DEFINE_integer('batch_size', 64, 'Global train batch.', flag_values=values)


def parse_flags(values: flags.FlagValues, argv: Sequence[str] | None = None,
                program: str = 'benchmark') -> flags.FlagValues:
  """Parses `argv` (default `sys.argv[1:]`) into `values`; a mistake is one line, exit 2."""
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    rest = values([program, *argv])
  except flags.Error as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f'error: unexpected arguments: {" ".join(rest[1:])}', file=sys.stderr)
    sys.exit(2)
  return values


def get_config(*, depth: int, width: int = 64, hidden_units: int = 4096, **fields):
  """The default config with a benchmark's model and top-level fields (batch sizes, ...)."""
  config = default.get_config()
  config.model.depth = depth
  config.model.width = width
  config.model.hidden_units = hidden_units
  for name, value in fields.items():
    setattr(config, name, value)
  return config
