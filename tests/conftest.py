"""Shared fixtures: generated samples (folder and zip), a TFDS data dir, a small config,
one short training run."""

import atexit
import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
# One persistent JAX compilation cache for the session: this process (JAX reads these when
# first imported, below) and every main.py it starts (`compile_cache.enable_compilation_cache`
# takes the variable over the folder beside the workdir), so each tiny program compiles once.
# Tests of the cache itself give their own folders. Removed when the session ends.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='vgg_flax_test_jax_cache_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# The suite compiles about a hundred tiny programs and runs each for a few steps. XLA's CPU
# backend at LLVM -O0 compiles them 2-4x faster and runs them about 2x slower: the suite takes
# 40% less time (AMD EPYC, 2 cores: fast set 3:49 -> 2:20). The numerics are the same
# program's; the tests that compare two runs compile both here. The README's first command
# (test_smoke.py) trains for minutes, so it runs at the user's flags, kept in USER_XLA_FLAGS
# (set once, by the first process, before xdist's workers inherit the environment).
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('VGG_FLAX_USER_XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))
USER_XLA_FLAGS = os.environ['VGG_FLAX_USER_XLA_FLAGS']
if 'xla_backend_optimization_level' not in USER_XLA_FLAGS:
  os.environ['XLA_FLAGS'] = f'{USER_XLA_FLAGS} {TEST_XLA_FLAGS}'.strip()

import pytest  # pylint: disable=g-import-not-at-top

from configs import default  # pylint: disable=g-import-not-at-top
from input_pipeline import synthetic  # pylint: disable=g-import-not-at-top

# Small enough to prepare in well under a second, big enough for several batches.
SAMPLE = dict(num_classes=4, train_per_class=24, val_per_class=8, test_images=12, seed=0)


@pytest.fixture
def tmpfs(tmp_path):
  """Mounts a tmpfs of the given size (`tmpfs('4m')`) and returns its folder; unmounted after
  the test. Disk-full tests need a disk that really fills."""
  mounted = []

  def mount(size: str) -> pathlib.Path:
    mount_point = tmp_path / f'tmpfs_{len(mounted)}'
    mount_point.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(mount_point)],
                   check=True)
    mounted.append(mount_point)
    return mount_point

  yield mount
  for mount_point in mounted:
    subprocess.run(['umount', '-l', str(mount_point)], check=True)


@pytest.fixture(scope='session')
def sample_params():
  """The parameters of `sample_folder` and `sample_zip`."""
  return dict(SAMPLE)


@pytest.fixture(scope='session')
def sample_folder(tmp_path_factory):
  """The extracted `tiny-imagenet-200` folder of a generated sample."""
  return synthetic.write_sample(tmp_path_factory.mktemp('sample_folder'), **SAMPLE)


@pytest.fixture(scope='session')
def sample_zip(tmp_path_factory):
  """The same sample as `tiny-imagenet-200.zip`."""
  return synthetic.write_sample(tmp_path_factory.mktemp('sample_zip'), zip=True, **SAMPLE)


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory):
  """A TFDS data dir shared by the session, so each source is prepared once."""
  return tmp_path_factory.mktemp('tfds')


def small_data_config(sample_folder, tfds_data_dir):
  """The default config on the generated sample, with a narrow VGG-11 and small batches."""
  config = default.get_config()
  config.data_source = str(sample_folder)
  config.data_dir = str(tfds_data_dir)
  config.batch_size = 16
  config.eval_batch_size = 16
  config.image_size = 32
  config.model.depth = 11
  config.model.width = 8
  config.model.hidden_units = 32
  config.num_epochs = 2
  config.progress_bar = False
  config.log_every_steps = 2
  return config


@pytest.fixture(scope='session')
def make_data_config(sample_folder, tfds_data_dir):
  """Makes a new `data_config` each call: for module and session fixtures, which cannot
  use that function-scoped fixture."""
  return lambda: small_data_config(sample_folder, tfds_data_dir)


@pytest.fixture
def data_config(make_data_config):
  """The default config on the generated sample, with a narrow VGG-11 and small batches."""
  return make_data_config()


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished `train_and_evaluate` run that tests only read (copy it to change it)."""
  workdir: pathlib.Path
  state: Any  # The train state it returned.


@pytest.fixture(scope='session')
def trained_run(make_data_config, tmp_path_factory):
  """`data_config` trained for its two epochs in `<runs>/fresh`, once per session.

  The workdir's parent holds nothing else of this fixture's, so a test may put other runs
  beside it (e.g. to point TensorBoard's --logdir at both).
  """
  from vgg_flax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('runs') / 'fresh'
  state = train.train_and_evaluate(make_data_config(), str(workdir))
  return TrainedRun(workdir=workdir, state=state)


# pytest.ini runs the files on two xdist workers, one file per worker at a time (loadfile),
# handed out in collection order (--no-loadscope-reorder). The longest files go first, so that
# the many short ones fill in beside them instead of leaving one worker alone at the end
# (seconds on 2 busy cores, whole suite: smoke 110-265, faults 120-200, multiprocess 30-70,
# benchmarks 55-100, hostile input 80, steps 45, image folder 40, Grad-CAM 37; fast set:
# hostile input 80, steps 30, models 22, conv 17, step features 16, Grad-CAM 10).
LONGEST_FIRST = ('test_smoke.py', 'test_faults.py', 'test_hostile_workdir.py',
                 'test_multiprocess.py', 'test_benchmarks.py', 'test_hostile_input.py',
                 'test_fuzz.py', 'test_steps.py', 'test_image_folder.py', 'test_predict.py',
                 'test_gradcam.py', 'test_init_from.py', 'test_conv.py', 'test_models.py',
                 'test_train.py', 'test_train_step_features.py', 'test_grad_accum.py',
                 'test_streaming.py')


def pytest_collection_modifyitems(items):
  """Moves the longest files to the front; the rest keep their order."""
  def rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)


def worker_cpus(worker: str | None, workers: int, cpus: list[int]) -> set[int] | None:
  """The CPUs of xdist worker `worker` ('gw0', ...) of `workers`: an equal share of `cpus`.

  None (no pinning) outside xdist, for one worker, or with fewer CPUs than workers.
  """
  if worker is None or not 1 < workers <= len(cpus):
    return None
  return set(cpus[int(worker.removeprefix('gw'))::workers])


def pytest_configure(config):
  """Gives each xdist worker, and the processes it starts, CPUs of its own.

  Otherwise every JAX, XLA and TensorFlow process sizes its thread pools to all the CPUs,
  and the workers' processes fight over them: with a CPU each, the whole suite takes 18%
  less time on 2 cores (7:20 against 8:55, AMD EPYC, 2026-12-06).
  """
  del config
  share = worker_cpus(os.environ.get('PYTEST_XDIST_WORKER'),
                      int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')),
                      sorted(os.sched_getaffinity(0)))
  if share is not None:
    os.sched_setaffinity(0, share)
