"""Faults end to end: `main.py` in subprocesses hit by real signals, full disks, damage.

Every run trains the same narrow VGG-11 for EPOCHS short epochs; whatever happens on the
way, the rerun must end bitwise equal to one uninterrupted run (final params and optimizer
state read back from the final orbax checkpoints), with each epoch once in `history.csv` and
in TensorBoard. The subprocesses share the session's JAX compilation cache (tests/conftest.py),
so only the first compiles.
"""

import io
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from configs import default
from input_pipeline import pipeline
from input_pipeline import synthetic
from input_pipeline import tiny_imagenet
from vgg_flax.workdir import checkpoints as checkpointing
from vgg_flax.core import models
from vgg_flax.workdir import disk as storage
from vgg_flax.workdir import atomic
from vgg_flax.workdir import files

REPO = pathlib.Path(__file__).resolve().parent.parent
# The fewest that leave the kill test an epoch for each fault: kill -9 just after epoch 2,
# SIGTERM and SIGINT each in the epoch after the one a resumed run finishes (SIGINT in
# epoch 5 at the latest), and the rerun trains what is left.
EPOCHS = 5
STEPS_PER_EPOCH = 2
# The per-epoch scalar counted in TensorBoard (whatever sub-folder its writer uses).
TIMEOUT = 240


def run_flags(workdir, data_source, data_dir, *extra) -> list[str]:
  return [sys.executable, 'main.py', '--config=configs/default.py', f'--workdir={workdir}',
          f'--config.data_source={data_source}', f'--config.data_dir={data_dir}',
          '--config.batch_size=16', '--config.eval_batch_size=16', '--config.image_size=32',
          '--config.model.depth=11', '--config.model.width=8', '--config.model.hidden_units=32',
          f'--config.num_epochs={EPOCHS}', f'--config.steps_per_epoch={STEPS_PER_EPOCH}',
          '--config.early_stopping.patience=100', '--config.log_every_steps=1',
          '--config.progress_bar=False', *extra]


@pytest.fixture(scope='module')
def env():
  """The subprocesses' environment; they use the session's compilation cache (conftest)."""
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')


class Run:
  """A `main.py` subprocess whose output goes to a log file the test can watch."""

  def __init__(self, env, args, log: pathlib.Path):
    self.log = log
    with open(log, 'w') as out:
      self.process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
    self.pid = self.process.pid

  def text(self) -> str:
    return self.log.read_text(errors='replace')

  def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> None:
    """Waits until the log holds `pattern` (fails if the process ends first)."""
    deadline = time.monotonic() + timeout
    while pattern not in self.text():
      assert self.process.poll() is None, f'ended before {pattern!r}:\n{self.text()[-3000:]}'
      assert time.monotonic() < deadline, f'no {pattern!r} in {timeout}s'
      time.sleep(0.02)

  def wait(self, timeout: float = TIMEOUT) -> int:
    return self.process.wait(timeout)


def run(env, args, log: pathlib.Path) -> tuple[int, str]:
  """Runs `main.py` to its end; returns the exit status and the output."""
  process = Run(env, args, log)
  return process.wait(), process.text()


def error_lines(output: str) -> list[str]:
  return [line for line in output.splitlines() if line.startswith('error: ')]


def assert_one_line_error(output: str, *parts: str) -> str:
  assert 'Traceback' not in output, output[-3000:]
  assert 'exception was never retrieved' not in output, output[-3000:]  # asyncio's reports.
  lines = error_lines(output)
  assert len(lines) == 1, output[-3000:]
  for part in parts:
    assert part in lines[0], lines[0]
  return lines[0]


def final_state(workdir: pathlib.Path) -> tuple[int, dict]:
  """(epoch, state as numpy) of the newest checkpoint, read back with orbax."""
  manager = ocp.CheckpointManager(
      workdir / 'checkpoints', options=ocp.CheckpointManagerOptions(create=False),
      item_names=('state', 'loop'))
  epoch = manager.latest_step()
  restored = manager.restore(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), loop=ocp.args.JsonRestore()))
  manager.close()
  return epoch, jax.tree.map(np.asarray, restored.state)


def assert_same_result(workdir: pathlib.Path, reference: pathlib.Path) -> None:
  """Same final params, BatchNorm statistics and optimizer state, bit for bit."""
  epoch, state = final_state(workdir)
  ref_epoch, ref_state = final_state(reference)
  assert epoch == ref_epoch == EPOCHS
  assert int(state['step']) == EPOCHS * STEPS_PER_EPOCH
  for key in ('params', 'batch_stats', 'opt_state'):
    jax.tree.map(np.testing.assert_array_equal, state[key], ref_state[key])


def scalar_steps(workdir: pathlib.Path, run: str, tag: str) -> list[int]:
  """The x values of `tag` in the TensorBoard run `workdir/run`, as TensorBoard reads them."""
  events = event_accumulator.EventAccumulator(str(workdir / run), size_guidance={'tensors': 0})
  events.Reload()
  return [event.step for event in events.Tensors(tag)]


def assert_each_epoch_once(workdir: pathlib.Path) -> None:
  history = files.read_history(workdir / 'history.csv')
  assert [row['epoch'] for row in history] == list(range(1, EPOCHS + 1))
  epochs = list(range(1, EPOCHS + 1))
  assert scalar_steps(workdir, 'val', 'loss') == epochs
  assert scalar_steps(workdir, 'train', 'loss') == epochs
  assert scalar_steps(workdir, 'train', 'per_step/loss') == list(
      range(1, STEPS_PER_EPOCH * EPOCHS + 1))
  assert sorted(os.listdir(workdir / 'plots')) == ['accuracy.png', 'loss.png',
                                                   'train_sample.png', 'val_sample.png']
  leftovers = [p for d in ('checkpoints', 'best') for p in os.listdir(workdir / d)
               if 'tmp' in p]
  assert not leftovers
  assert (workdir / '.lock').read_text() == ''  # Released.


@pytest.fixture(scope='module')
def source(sample_folder):
  return pathlib.Path(sample_folder)


@pytest.fixture(scope='module')
def reference(env, source, tfds_data_dir, tmp_path_factory):
  """An uninterrupted run: the result every faulty run must end with."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  code, output = run(env, run_flags(workdir, source, tfds_data_dir), workdir.parent / 'log')
  assert code == 0, output[-3000:]
  assert sorted(os.listdir(workdir / 'checkpoints')) == [str(EPOCHS - 1), str(EPOCHS)]
  return workdir


@pytest.mark.slow
def test_kill_9_sigterm_and_a_second_run_end_as_the_uninterrupted_run(
    env, source, reference, tmp_path):
  workdir, data_dir = tmp_path / 'run', tmp_path / 'tfds'
  args = run_flags(workdir, source, data_dir)

  # kill -9 while the dataset is being prepared: TFDS's temporary folder is left behind.
  first = Run(env, args, tmp_path / 'first.log')
  deadline = time.monotonic() + TIMEOUT
  while not list(data_dir.glob('tiny_imagenet/*/*incomplete*')):
    assert first.process.poll() is None and time.monotonic() < deadline, first.text()[-3000:]
    time.sleep(0.01)
  first.process.kill()
  first.wait()
  assert not list(data_dir.glob('tiny_imagenet/*/1.0.0'))  # Nothing half-prepared in use.

  # A second train on the workdir in use is refused, naming the first; the first goes on.
  second = Run(env, args, tmp_path / 'second.log')
  second.wait_for('epoch 1:')
  second.process.send_signal(signal.SIGSTOP)  # Holds it in epoch 2 while the other starts.
  code, output = run(env, args, tmp_path / 'refused.log')
  assert code == 2
  assert_one_line_error(output, f'process {second.pid} on host {socket.gethostname()}',
                        str(workdir))
  second.process.send_signal(signal.SIGCONT)
  # kill -9 just after epoch 2's checkpoint save started (orbax writes it in a thread).
  second.wait_for('epoch 2:')
  second.process.kill()
  second.wait()

  # SIGTERM, then Ctrl-C (SIGINT), each in the middle of the epoch after a resume: the run
  # stops at a step boundary within seconds and exits 128 + the signal.
  for number, signum in enumerate((signal.SIGTERM, signal.SIGINT)):
    stopped = Run(env, args, tmp_path / f'stopped_{number}.log')
    stopped.wait_for('Resuming after epoch')
    stopped.wait_for(': train loss')  # An epoch ended; the next one has begun.
    signalled = time.monotonic()
    stopped.process.send_signal(signum)
    assert stopped.wait() == 128 + signum
    assert time.monotonic() - signalled < 20
    output, name = stopped.text(), signal.Signals(signum).name
    if number == 0:
      assert f'Taking over {workdir / ".lock"} from process {second.pid}' in output
    assert f'{name} received: stopping at the next step boundary' in output
    assert f'Stopped by {name} during epoch' in output
    assert_one_line_error(output, f'stopped by {name}', 'rerun the same command')

  # The rerun finishes: the same numbers as a run nothing happened to.
  code, output = run(env, args, tmp_path / 'last.log')
  assert code == 0, output[-3000:]
  assert_same_result(workdir, reference)
  assert_each_epoch_once(workdir)


def garble(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[10:30] = b'\xff' * 20
  path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    env, source, tfds_data_dir, reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  garble(workdir / 'checkpoints' / str(EPOCHS) / 'state' / '_METADATA')
  # What a kill -9 in the middle of an orbax save leaves: a temporary folder.
  shutil.copytree(workdir / 'checkpoints' / str(EPOCHS),
                  workdir / 'checkpoints' / f'{EPOCHS + 1}.orbax-checkpoint-tmp')
  code, output = run(env, run_flags(workdir, source, tfds_data_dir), tmp_path / 'log')
  assert code == 0, output[-3000:]
  assert f'{workdir / "checkpoints"}/{EPOCHS} cannot be restored (UnicodeDecodeError' in output
  assert f'Using {workdir / "checkpoints"}/{EPOCHS - 1} instead.' in output
  assert f'Resuming after epoch {EPOCHS - 1}' in output
  assert [p.name.split('_2')[0] for p in (workdir / 'damaged').iterdir()] == [
      f'checkpoints_{EPOCHS}']
  assert_same_result(workdir, reference)
  assert_each_epoch_once(workdir)

  # No checkpoint restorable: one line naming the folder and how to start over.
  for epoch in (EPOCHS - 1, EPOCHS):
    shutil.rmtree(workdir / 'checkpoints' / str(epoch) / 'state' / 'ocdbt.process_0')
  code, output = run(env, run_flags(workdir, source, tfds_data_dir), tmp_path / 'log2')
  assert code == 1
  assert_one_line_error(output, f'{workdir / "checkpoints"}: no checkpoint can be restored',
                        'new --workdir')


@pytest.mark.slow
def test_a_damaged_best_checkpoint_falls_back_for_evaluation(reference, tmp_path, caplog):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  best_epochs = sorted(int(p) for p in os.listdir(workdir / 'best'))
  assert len(best_epochs) == 2  # The two newest best epochs are kept.
  config = default.get_config()
  config.model.depth, config.model.width, config.model.hidden_units = 11, 8, 32
  model = models.create_model(config.model, num_classes=4)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3)),
                                               train=False))
  _, intact_loop = checkpointing.restore_best_variables(workdir, abstract)
  assert intact_loop['epoch'] == best_epochs[1]
  garble(workdir / 'best' / str(best_epochs[1]) / 'variables' / '_METADATA')
  variables, loop = checkpointing.restore_best_variables(workdir, abstract)
  assert loop['epoch'] == best_epochs[0]
  assert set(variables) == {'params', 'batch_stats'}
  assert f'Using {workdir / "best"}/{best_epochs[0]} instead.' in caplog.text
  garble(workdir / 'best' / str(best_epochs[0]) / 'variables' / '_METADATA')
  with pytest.raises(checkpointing.CheckpointError,
                     match=re.escape(f'{workdir / "best"}: no checkpoint can be restored')):
    checkpointing.restore_best_variables(workdir, abstract)


@pytest.fixture
def small_disk(tmpfs):
  """A 4 MiB tmpfs: room for the checkpoints of one epoch, not two."""
  return tmpfs('4m')


@pytest.mark.slow
def test_full_then_read_only_disk_is_one_line_and_the_rerun_resumes(
    env, source, tfds_data_dir, reference, small_disk, tmp_path):
  workdir = small_disk / 'run'
  args = run_flags(workdir, source, tfds_data_dir)
  code, output = run(env, args, tmp_path / 'full.log')
  assert code == 1
  assert_one_line_error(output, str(workdir), 'No space left on device', 'rerun')
  assert final_state(workdir)[0] == 1  # Epoch 1's checkpoint is intact.

  subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
  code, output = run(env, args, tmp_path / 'read_only.log')
  assert code == 1
  assert_one_line_error(output, str(workdir), 'Read-only file system')

  subprocess.run(['mount', '-o', 'remount,rw,size=64m', str(small_disk)], check=True)
  code, output = run(env, args, tmp_path / 'resumed.log')
  assert code == 0, output[-3000:]
  assert 'Resuming after epoch 1' in output
  assert_same_result(workdir, reference)
  assert_each_epoch_once(workdir)


def damaged_sources(root: pathlib.Path, params: dict) -> dict[str, tuple[pathlib.Path, str]]:
  """Sample copies, each with one fault: (data_source, the file the error must name)."""
  cases = {}
  zip_path = pathlib.Path(synthetic.write_sample(root / 'zip', zip=True, **params))
  zip_path.write_bytes(zip_path.read_bytes()[:zip_path.stat().st_size // 2])
  cases['truncated zip'] = (zip_path, f'{zip_path}: not a readable zip file')
  folder = pathlib.Path(synthetic.write_sample(root / 'empty', **params))
  image = sorted((folder / 'train').glob('*/images/*'))[5]
  image.write_bytes(b'')
  cases['empty JPEG'] = (folder, f'{image}: empty file')
  folder = pathlib.Path(synthetic.write_sample(root / 'no_images', **params))
  images = sorted((folder / 'train').iterdir())[1] / 'images'
  for image in images.iterdir():
    image.unlink()
  cases['class without images'] = (folder, f'{images}: no images')
  folder = pathlib.Path(synthetic.write_sample(root / 'missing', **params))
  annotations = folder / 'val' / 'val_annotations.txt'
  wnid = annotations.read_text().split('\t')[1]
  annotations.write_text(annotations.read_text() + f'val_999.JPEG\t{wnid}\t0\t0\t63\t63\n')
  cases['annotation of a missing file'] = (
      folder, f'{folder / "val" / "images" / "val_999.JPEG"}: file not found')
  return cases


@pytest.mark.slow
def test_bad_data_is_one_line_naming_the_file_and_nothing_is_prepared(
    env, sample_params, tmp_path):
  cases = damaged_sources(tmp_path / 'sources', sample_params)
  runs = {name: Run(env, run_flags(tmp_path / f'w{i}', data_source, tmp_path / f'd{i}'),
                    tmp_path / f'{i}.log')
          for i, (name, (data_source, _)) in enumerate(cases.items())}
  for i, (name, (_, expected)) in enumerate(cases.items()):
    assert runs[name].wait() == 2, (name, runs[name].text()[-3000:])
    assert_one_line_error(runs[name].text(), expected)
    assert not list((tmp_path / f'd{i}').glob('tiny_imagenet/*/1.0.0')), name
    assert not list((tmp_path / f'd{i}').glob('tiny_imagenet/*/*incomplete*')), name
    assert not (tmp_path / f'w{i}' / 'checkpoints').exists(), name


def test_skip_corrupt_skips_and_counts_the_bad_image(sample_params, tmp_path, caplog):
  folder = pathlib.Path(synthetic.write_sample(tmp_path / 'empty', **sample_params))
  image = sorted((folder / 'train').glob('*/images/*'))[5]
  image.write_bytes(b'')
  builder = tiny_imagenet.make_builder(folder, data_dir=str(tmp_path / 'tfds'),
                                       skip_corrupt=True)
  builder.download_and_prepare()
  train_images = sample_params['num_classes'] * sample_params['train_per_class']
  assert builder.info.splits['train'].num_examples == train_images - 1
  assert f'skipped 1 unreadable images of {train_images} in split train: {image.name}' in (
      caplog.text)


def test_a_png_named_jpeg_is_read_as_the_image_it_is(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  png = io.BytesIO()
  Image.fromarray(pixels).save(png, format='PNG')
  decoded = tiny_imagenet.decode_image(png.getvalue(), 'val_3.JPEG')
  np.testing.assert_array_equal(decoded, pixels)


def test_a_half_prepared_tfds_folder_is_prepared_again(source, tfds_data_dir, tmp_path,
                                                        caplog):
  complete = tiny_imagenet.prepared_folder(source, tfds_data_dir)
  pipeline.prepared_builder('tiny_imagenet', str(source), str(tfds_data_dir), False)
  data_dir = tmp_path / 'tfds'
  folder = tiny_imagenet.prepared_folder(source, data_dir)
  shutil.copytree(complete, folder)
  shard = next(folder.glob('*-validation.tfrecord-*'))
  shard.unlink()
  builder = pipeline.prepared_builder('tiny_imagenet', str(source), str(data_dir), False)
  assert f'{folder} is half prepared ({shard.name} missing); preparing it again' in caplog.text
  assert shard.exists()
  assert builder.info.splits['validation'].num_examples == 32
  assert pipeline.half_prepared(folder) is None


def test_write_atomically_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk):
  target = small_disk / 'out' / 'predictions.csv'
  atomic.write_csv(target, ['a'], [[1]])
  with pytest.raises(storage.StorageError,
                     match=re.escape(f'cannot write {target}: [Errno 28] No space left')):
    atomic.write_atomically(target, lambda tmp: tmp.write_bytes(b'x' * (8 << 20)))
  assert os.listdir(target.parent) == ['predictions.csv']
  assert target.read_text() == 'a\n1\n'  # The previous version is intact.


def test_write_atomically_removes_temporaries_of_dead_processes(tmp_path):
  dead = subprocess.Popen(['true'])
  dead.wait()
  stale = tmp_path / f'.history.{dead.pid}.tmp.csv'
  live = tmp_path / f'.history.{os.getppid()}.tmp.csv'
  stale.write_text('half')
  live.write_text('being written')
  files.write_history(tmp_path / 'history.csv', [])
  assert sorted(os.listdir(tmp_path)) == [live.name, 'history.csv']


def test_which_errors_are_disk_failures(tmp_path):
  workdir = tmp_path / 'run'
  assert storage.is_storage_failure(OSError(28, 'No space left on device', '/x'), workdir)
  # TensorStore's error from an orbax save thread: the errno is in its status payload (the
  # installed version's own error: tests/test_write_atomically.py).
  assert storage.is_storage_failure(ValueError(
      'RESOURCE_EXHAUSTED: Failed to write 31039 bytes: No space left on device '
      "[os_error_code='28']"), workdir)
  assert storage.is_storage_failure(PermissionError(13, 'Permission denied',
                                                    str(workdir / '.lock')), workdir)
  # Reading a data file one may not read is the data's problem, not the workdir's.
  assert not storage.is_storage_failure(PermissionError(13, 'Permission denied', '/data/x'),
                                        workdir)
  assert not storage.is_storage_failure(ValueError('bad value'), workdir)
