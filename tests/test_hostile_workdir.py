"""Workdirs, cache folders, weights and outputs someone else made, through the entry points.

A copied or planted workdir file (`config.json`, `.lock`), a shared cache folder, a state_dict
with the wrong things in it, a file appearing where an export goes, and signals at any time:
each ends with one line and the documented exit status, and nothing outside the workdir is
written or overwritten.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 300


def tiny_flags(config) -> list[str]:
  """`main.py` flags for `data_config`'s data and model (the `trained_run` fixture's)."""
  return [f'--config.data_source={config.data_source}', f'--config.data_dir={config.data_dir}',
          f'--config.batch_size={config.batch_size}',
          f'--config.eval_batch_size={config.eval_batch_size}',
          f'--config.image_size={config.image_size}', f'--config.model.depth=11',
          f'--config.model.width={config.model.width}',
          f'--config.model.hidden_units={config.model.hidden_units}',
          '--config.progress_bar=False']


def environment(**extra) -> dict:
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', **extra)


def main_py(*args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, 'main.py', '--config=configs/default.py', *args],
                        cwd=REPO, env=env or environment(), capture_output=True, text=True,
                        timeout=TIMEOUT)


def one_line_error(result, status: int = 2) -> str:
  """The run's one `error:` line; fails on another status, a traceback or more lines."""
  output = result.stdout + result.stderr
  assert result.returncode == status, output[-3000:]
  assert 'Traceback' not in output, output[-3000:]
  lines = [line for line in output.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, output[-3000:]
  return lines[0]


@pytest.fixture
def workdir(trained_run, tmp_path) -> pathlib.Path:
  """A copy of the session's trained workdir."""
  copy = tmp_path / 'copied'
  shutil.copytree(trained_run.workdir, copy)
  return copy


# --- The lock ------------------------------------------------------------------------------


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_symlinked_lock_is_refused_and_its_target_untouched(data_config, tmp_path):
  victim = tmp_path / 'precious.txt'
  victim.write_text('precious\n')
  run = tmp_path / 'run'
  run.mkdir()
  (run / '.lock').symlink_to(victim)
  line = one_line_error(main_py(f'--workdir={run}', *tiny_flags(data_config)))
  assert str(run / '.lock') in line and 'not a regular file' in line
  assert victim.read_text() == 'precious\n'


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_lock_that_is_a_directory_is_one_line(data_config, tmp_path):
  run = tmp_path / 'run'
  (run / '.lock').mkdir(parents=True)
  line = one_line_error(main_py(f'--workdir={run}', *tiny_flags(data_config)))
  assert str(run / '.lock') in line and 'not a regular file' in line


# --- config.json ---------------------------------------------------------------------------


def edit_config(workdir: pathlib.Path, edit) -> pathlib.Path:
  path = workdir / 'config.json'
  path.write_text(edit(path.read_text()))
  return path


def without_model(text: str) -> str:
  saved = json.loads(text)
  del saved['model']
  return json.dumps(saved)


def with_width(text: str) -> str:
  saved = json.loads(text)
  saved['model']['width'] = 'wide'
  return json.dumps(saved)


@pytest.mark.slow  # main.py or a converter in a subprocess.
@pytest.mark.parametrize('edit, fragment', [
    (lambda text: text[:-10], 'not valid JSON'),
    (lambda text: '[1, 2]', 'a JSON object'),
    (with_width, "model.width"),
    (without_model, "model"),
], ids=['truncated', 'list', 'string_width', 'no_model'])
def test_malformed_config_json_is_one_line_naming_file_and_field(workdir, edit, fragment):
  path = edit_config(workdir, edit)
  line = one_line_error(main_py('--mode=evaluate', f'--workdir={workdir}'))
  assert str(path) in line and fragment in line


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_copied_workdir_data_is_checked_before_use(workdir, tmp_path):
  elsewhere = tmp_path / 'elsewhere'
  path = edit_config(workdir, lambda text: json.dumps(
      {**json.loads(text), 'data_source': str(elsewhere), 'dataset': 'tiny_imagenet'}))
  line = one_line_error(main_py('--mode=evaluate', f'--workdir={workdir}'))
  assert str(path) in line and 'data_source' in line and str(elsewhere) in line
  assert not elsewhere.exists()


# --- The compilation cache -------------------------------------------------------------------


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_copied_workdir_evaluates_with_its_data_logged_and_a_private_cache(workdir, tmp_path):
  home = tmp_path / 'home'
  env = environment(HOME=str(home))
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  env.pop('XDG_CACHE_HOME', None)
  result = main_py('--mode=evaluate', f'--workdir={workdir}', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  # The command line names no data: the log says which data the workdir's config names.
  saved = json.loads((workdir / 'config.json').read_text())
  assert (f"data from {workdir / 'config.json'} (the command line names none): dataset="
          f"{saved['dataset']}, data_source={saved['data_source']}") in result.stderr
  # The compiled steps went to the user's own cache folder, mode 0700, not beside the workdir.
  cache = home / '.cache' / 'vgg_flax' / 'jax'
  assert cache.is_dir() and any(cache.iterdir())
  assert cache.stat().st_mode & 0o777 == 0o700
  assert not (workdir.parent / '.jax_cache').exists()


@pytest.mark.slow  # main.py or a converter in a subprocess.
@pytest.mark.parametrize('problem', ['world_writable', 'other_owner'])
def test_shared_cache_folder_is_refused(workdir, tmp_path, problem):
  cache = tmp_path / 'shared_cache'
  cache.mkdir()
  if problem == 'world_writable':
    cache.chmod(0o777)
  else:
    os.chown(cache, 65534, 65534)  # nobody
  line = one_line_error(main_py('--mode=evaluate', f'--workdir={workdir}',
                                f'--config.compilation_cache_dir={cache}'))
  assert str(cache) in line
  assert ('writable by others' if problem == 'world_writable' else 'owned by uid 65534') in line
  assert not any(cache.iterdir())


# --- Signals ---------------------------------------------------------------------------------


def start(args, log: pathlib.Path, env=None) -> subprocess.Popen:
  with open(log, 'w') as out:
    return subprocess.Popen([sys.executable, 'main.py', '--config=configs/default.py', *args],
                            cwd=REPO, env=env or environment(), stdout=out,
                            stderr=subprocess.STDOUT)


def wait_for(process, log: pathlib.Path, pattern: str) -> None:
  deadline = time.monotonic() + TIMEOUT
  while pattern not in log.read_text(errors='replace'):
    assert process.poll() is None, log.read_text()[-3000:]
    assert time.monotonic() < deadline, f'no {pattern!r}'
    time.sleep(0.02)


def finished(process, log: pathlib.Path) -> subprocess.CompletedProcess:
  process.wait(TIMEOUT)
  return subprocess.CompletedProcess(process.args, process.returncode, log.read_text(), '')


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_signal_before_training_is_one_line_and_143(data_config, tmp_path):
  log = tmp_path / 'log'
  process = start([f'--workdir={tmp_path / "run"}', *tiny_flags(data_config),
                   f'--config.data_dir={tmp_path / "fresh_tfds"}'], log)
  wait_for(process, log, 'JAX process 0/1')  # Before the data is prepared.
  process.send_signal(signal.SIGTERM)
  assert one_line_error(finished(process, log), 128 + signal.SIGTERM) == (
      'error: stopped by SIGTERM.')


@pytest.mark.slow  # main.py or a converter in a subprocess.
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_second_signal_stops_at_once_with_one_line(data_config, tmp_path, signum):
  log = tmp_path / 'log'
  process = start([f'--workdir={tmp_path / "run"}', *tiny_flags(data_config),
                   '--config.num_epochs=50', '--config.early_stopping.patience=100'], log)
  wait_for(process, log, 'epoch 1:')
  process.send_signal(signum)
  wait_for(process, log, 'received: stopping at the next step boundary')
  process.send_signal(signum)
  line = one_line_error(finished(process, log), 128 + signum)
  assert line == f'error: stopped at once by a second {signal.Signals(signum).name}.'


# --- Weights and exports -----------------------------------------------------------------------


def state_dict_with_a_dict_for_a_tensor(path: pathlib.Path) -> str:
  from tests import torch_models  # pylint: disable=g-import-not-at-top
  state = torch_models.OriginalVGG(11, width=8, hidden=32, num_classes=4).state_dict()
  key = next(iter(state))
  state[key] = {'weight': state[key]}
  torch.save(state, path)
  return key


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_convert_refuses_a_dict_where_a_tensor_belongs(tmp_path):
  key = state_dict_with_a_dict_for_a_tensor(tmp_path / 'odd.pt')
  result = subprocess.run(
      [sys.executable, '-m', 'vgg_flax.convert', f'--state_dict={tmp_path / "odd.pt"}',
       '--config=configs/vgg11.py', f'--workdir={tmp_path / "run"}'],
      cwd=REPO, env=environment(), capture_output=True, text=True, timeout=TIMEOUT)
  line = one_line_error(result)
  assert key in line and 'dict' in line and 'tensor' in line
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_init_from_refuses_a_dict_where_a_tensor_belongs(data_config, tmp_path):
  key = state_dict_with_a_dict_for_a_tensor(tmp_path / 'odd.pt')
  line = one_line_error(main_py(f'--workdir={tmp_path / "run"}', *tiny_flags(data_config),
                                f'--config.init_from={tmp_path / "odd.pt"}'))
  assert key in line and 'dict' in line and 'tensor' in line


@pytest.mark.slow  # main.py or a converter in a subprocess.
def test_export_never_overwrites_a_file_created_while_it_runs(workdir, tmp_path):
  output = tmp_path / 'model.savedmodel'
  log = tmp_path / 'log'
  with open(log, 'w') as out:
    process = subprocess.Popen(
        [sys.executable, '-m', 'vgg_flax.export', f'--workdir={workdir}',
         '--format=saved_model', f'--output={output}'], cwd=REPO, env=environment(),
        stdout=out, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + TIMEOUT
  while not list(tmp_path.glob(f'.{output.name}*')):  # The export's temporary appears.
    assert process.poll() is None, log.read_text()[-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.01)
  output.write_text('someone else\'s file\n')
  line = one_line_error(finished(process, log))
  assert str(output) in line and 'exists' in line
  assert output.read_text() == 'someone else\'s file\n'
  assert not list(tmp_path.glob(f'.{output.name}*'))  # The temporary is gone.


def test_planted_temporaries_are_never_written_through(tmp_path):
  from vgg_flax.workdir import atomic  # pylint: disable=g-import-not-at-top
  victim = tmp_path / 'victim.txt'
  victim.write_text('precious\n')
  target = tmp_path / 'run' / 'history.csv'
  target.parent.mkdir()
  # The names temporaries had before they were created exclusively, for this process and
  # for a dead one (stale temporaries of dead processes are removed: the link, not its target).
  for pid in (os.getpid(), 999_999):
    (target.parent / f'.history.{pid}.tmp.csv').symlink_to(victim)
  atomic.write_csv(target, ['a'], [[1]])
  assert target.read_text() == 'a\n1\n'
  assert victim.read_text() == 'precious\n'
