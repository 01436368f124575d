"""`python -m vgg_flax.convert`: a PyTorch state_dict file into a workdir.

  python -m vgg_flax.convert --state_dict=vgg16.pt --config=configs/vgg16.py \
      --workdir=runs/vgg16_torch

Prints the model and the checkpoint written as one JSON line; a bad file or config is one
line and exit status 2. `vgg_flax.convert.from_torch_state_dict(state_dict, model)` stays
importable from here; the code is `vgg_flax.interop`.
"""

import json
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from vgg_flax.core import models
from vgg_flax.errors import ConfigError
from vgg_flax.interop import commands
from vgg_flax.interop.torch_weights import from_torch_state_dict  # pylint: disable=unused-import
from vgg_flax.interop.torch_weights import load_state_dict  # pylint: disable=unused-import

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined when it runs, so importing the names above defines none."""
  flags.DEFINE_string('state_dict', None, 'A torch.save(model.state_dict()) file.',
                      required=True)
  config_flags.DEFINE_config_file('config', None, 'Config of the model the weights are for.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory to write the converted run to.',
                      required=True)
  flags.mark_flags_as_required(['config'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    model, variables = commands.convert_file(FLAGS.state_dict, FLAGS.config)
    path = commands.write_converted_workdir(FLAGS.config, variables, FLAGS.workdir)
  except (ValueError, FileNotFoundError, ConfigError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  print(json.dumps({'depth': model.depth, 'conv1x1': model.conv1x1,
                    'num_classes': model.num_classes,
                    'params': models.count_params(variables['params']), 'checkpoint': path}))


if __name__ == '__main__':
  define_flags()
  app.run(main)
