"""`python -m vgg_flax.export`: a workdir's `best/` model out to PyTorch or a SavedModel.

  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --output=vgg16.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=torch --layout=torchvision \
      --output=vgg16_tv.pt
  python -m vgg_flax.export --workdir=runs/vgg16 --format=saved_model --output=vgg16_savedmodel

Prints what it wrote as `key=value` pairs; a mistake is one line and exit status 2. The
code is `vgg_flax.interop` (`commands.export_workdir`).
"""

import sys

from absl import app
from absl import flags

from vgg_flax.errors import ConfigError
from vgg_flax.interop import commands

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when it runs, so importing this module defines none.

  Plain strings, checked by `export_workdir`: a wrong value is one line and exit status 2.
  """
  flags.DEFINE_string('workdir', None, 'The training workdir whose best/ model to export.')
  flags.DEFINE_string('format', 'torch', f'One of {", ".join(commands.FORMATS)}.')
  flags.DEFINE_string('layout', 'original',
                      f'For --format=torch: one of {", ".join(commands.LAYOUTS)}.')
  flags.DEFINE_string('output', None, 'File (torch) or folder (saved_model) to create.')


def main(argv):
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])}', file=sys.stderr)
    sys.exit(2)
  missing = [f'--{name}' for name in ('workdir', 'output') if not FLAGS[name].value]
  try:
    if missing:
      raise commands.ExportError(f'{" and ".join(missing)} must be given, e.g. '
                                 '--workdir=runs/vgg16 --format=torch --output=vgg16.pt.')
    summary = commands.export_workdir(FLAGS.workdir, FLAGS.output, fmt=FLAGS.format,
                                      layout=FLAGS.layout)
  except (commands.ExportError, ConfigError, FileNotFoundError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  print(' '.join(f'{k}={v}' for k, v in summary.items() if v is not None))


if __name__ == '__main__':
  define_flags()
  app.run(main)
