"""Trains, evaluates and predicts with VGG models on Tiny ImageNet.

  python main.py --config=configs/vgg16_c11.py --workdir=runs/vgg16_c11
  python main.py --config=configs/vgg16_c11.py --workdir=runs/vgg16_c11 --mode=evaluate
  python main.py --mode=predict_ensemble --workdir=runs/ensemble
  python main.py --mode=summary --workdir=runs/ensemble

Without --config, train, evaluate and predict use configs/smoke.py, predict_ensemble and
summary configs/ensemble.py (the five members under runs/). An existing workdir is resumed.
A mistake in the flags, the config or the data ends with a one-line message and exit
status 2.
"""

import os
import sys

if sys.version_info < (3, 12):  # Before any dependency is imported: JAX 0.11+ needs 3.12.
  print(f'error: vgg_flax needs Python 3.12 or newer (JAX 0.11 and later do); this is Python '
        f'{sys.version_info[0]}.{sys.version_info[1]}. Make the venv with python3.12.',
        file=sys.stderr)
  sys.exit(2)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from vgg_flax.cli import compile_cache  # pylint: disable=unused-import  # Its clock starts.
from vgg_flax.cli import flags as cli_flags
from vgg_flax.errors import ConfigError
# JAX, TensorFlow and the modes are imported in main(), once the flags are parsed and
# checked: a mistake in them is answered in a fraction of a second, not after ~6 s of imports.

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for everything a run writes; an existing one '
                    'is resumed. Default: runs/<config file name>.')
flags.DEFINE_enum('mode', 'train', cli_flags.MODES, cli_flags.mode_help())
# No default here: cli_flags.parse_flags gives the mode's default (cli_flags.DEFAULT_CONFIGS).
config_flags.DEFINE_config_file('config', None, 'Config file (ml_collections); override '
                                'fields with --config.<field>=value.', lock_config=True)
FLAGS['config'].default_as_str = cli_flags.default_configs_help()
flags.DEFINE_bool('distributed', False, 'Join a multi-process run with '
                  'jax.distributed.initialize() (auto-detected on TPU pods, SLURM and Open MPI; '
                  'elsewhere give the three flags below).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (implies '
                    '--distributed).')
flags.DEFINE_integer('num_processes', None, 'Processes in the run (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')


def parse_flags(argv: list[str]) -> list[str]:
  """app.run's flag parser: a mistake in a flag or an override is one line, exit status 2.

  JAX's own flags (`--jax_platforms=cpu`, ...) exist only once JAX is imported: a command
  line that names one pays for that import first.
  """
  if cli_flags.names_jax_flags(argv):
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.config_with_absl()
  try:
    return cli_flags.parse_flags(argv, FLAGS)
  except ConfigError as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  import jax  # pylint: disable=g-import-not-at-top
  from vgg_flax.train import interrupts  # pylint: disable=g-import-not-at-top
  interrupts.install()  # From here on a signal ends the run with one line (or at a step).
  try:
    run(jax)
  except interrupts.Interrupted as stop:
    print(f'error: {stop}', file=sys.stderr)
    sys.exit(stop.exit_code)


def run(jax) -> None:
  """Connects the processes, checks a training config, then runs the mode.

  JAX first (for the devices the batch sizes must divide), then the config's check, then
  TensorFlow and the modes: a training config that cannot work is answered in seconds.
  """
  from vgg_flax.workdir import config as run_config  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed or FLAGS.coordinator_address:  # Before anything asks for devices.
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  if FLAGS.mode == 'train':
    try:
      run_config.validate_config(FLAGS.config)
    except ConfigError as error:
      print(f'error: {error}', file=sys.stderr)
      sys.exit(2)
  from vgg_flax.cli import dispatch  # pylint: disable=g-import-not-at-top
  workdir = FLAGS.workdir or dispatch.default_workdir(
      config_flags.get_config_filename(FLAGS['config']))
  dispatch.main(FLAGS.mode, FLAGS.config, workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
