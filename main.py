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

import logging as pylogging
import os
import pathlib
import sys

if sys.version_info < (3, 12):  # Before any dependency is imported: JAX 0.11+ needs 3.12.
  print(f'error: vgg_flax needs Python 3.12 or newer (JAX 0.11 and later do); this is Python '
        f'{sys.version_info[0]}.{sys.version_info[1]}. Make the venv with python3.12.',
        file=sys.stderr)
  sys.exit(2)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from vgg_flax import platform  # pylint: disable=g-import-not-at-top

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from ml_collections import config_flags

from vgg_flax import cli
from vgg_flax import configuration
# JAX, TensorFlow and the runner are imported in main(), once the flags are parsed and
# checked: a mistake in them is answered in a fraction of a second, not after ~6 s of imports.

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for everything a run writes; an existing one '
                    'is resumed. Default: runs/<config file name>.')
flags.DEFINE_enum('mode', 'train', cli.MODES, cli.mode_help())
# No default here: cli.parse_flags gives the mode's default (see cli.DEFAULT_CONFIGS).
config_flags.DEFINE_config_file('config', None, 'Config file (ml_collections); override '
                                'fields with --config.<field>=value.', lock_config=True)
FLAGS['config'].default_as_str = cli.default_configs_help()
flags.DEFINE_bool('distributed', False, 'Join a multi-process run with '
                  'jax.distributed.initialize() (auto-detected on TPU pods, SLURM and Open MPI; '
                  'elsewhere give the three flags below).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (implies '
                    '--distributed).')
flags.DEFINE_integer('num_processes', None, 'Processes in the run (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')


class _QuietLibraries(pylogging.Filter):
  """Drops the INFO chatter of orbax and TFDS (several lines per save); keeps warnings."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    noisy = any(f'{os.sep}{name}{os.sep}' in record.pathname
                for name in ('orbax', 'tensorflow_datasets', 'clu'))
    return record.levelno >= pylogging.WARNING or not noisy


def default_workdir() -> str:
  """runs/<config file stem>, e.g. runs/vgg16_c11 for configs/vgg16_c11.py."""
  config_path = config_flags.get_config_filename(FLAGS['config'])
  return str(pathlib.Path('runs') / pathlib.Path(config_path.split(':')[0]).stem)


def initialize_processes() -> None:
  """Connects the processes of a multi-process run; a single process needs nothing."""
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed or FLAGS.coordinator_address:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)


def exit_with_error(error: Exception, status: int = 2) -> None:
  """Prints the one-line error and exits with its status.

  By now the run has closed its checkpoints and writers. The exit skips the interpreter's
  teardown: a failed orbax restore leaves coroutines in background threads, which would
  print 'Event loop is closed' tracebacks under the one line while Python shuts down.
  """
  print(f'error: {error}', file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  logging.flush()
  os._exit(status)  # pylint: disable=protected-access


def parse_flags(argv: list[str]) -> list[str]:
  """app.run's flag parser: a mistake in a flag or an override is one line, exit status 2.

  JAX's own flags (`--jax_platforms=cpu`, ...) exist only once JAX is imported: a command
  line that names one pays for that import first.
  """
  if cli.names_jax_flags(argv):
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.config_with_absl()
  try:
    return cli.parse_flags(argv, FLAGS)
  except configuration.ConfigError as error:
    exit_with_error(error)


def check_config() -> None:
  """Refuses a training config that cannot work before TensorFlow is imported (seconds).

  Evaluation and prediction check theirs once merged with the workdir's saved config.
  """
  if FLAGS.mode == 'train':
    try:
      configuration.validate_config(FLAGS.config)
    except configuration.ConfigError as error:
      exit_with_error(error)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  initialize_processes()  # Before anything asks JAX for its devices.
  check_config()
  import jax  # pylint: disable=g-import-not-at-top
  # The runner imports the input pipeline, which keeps TensorFlow off the GPUs.
  from vgg_flax import runner  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().addFilter(_QuietLibraries())
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  workdir = FLAGS.workdir or default_workdir()
  platform.enable_compilation_cache(FLAGS.config, workdir)
  try:
    runner.run(FLAGS.mode, FLAGS.config, workdir)
  except runner.USER_ERRORS as error:
    exit_with_error(error, runner.exit_code(error))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
