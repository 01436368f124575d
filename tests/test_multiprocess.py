"""Two processes on this machine (one CPU device each) train and evaluate as one run."""

import json
import os
import socket
import subprocess
import sys

import pytest

from configs import vgg11
from vgg_flax.modes import one_model as predict
from vgg_flax.workdir import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(args, count=2, timeout=240):
  """Starts `count` main.py processes joined through a coordinator on the loopback."""
  address = f'127.0.0.1:{free_port()}'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = [subprocess.Popen(
      [sys.executable, 'main.py', *args, f'--coordinator_address={address}',
       f'--num_processes={count}', f'--process_id={i}'],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(count)]
  results = []
  for proc in procs:
    try:
      _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      pytest.fail('a process of the multi-process run hung')
    results.append((proc.returncode, stderr))
  return results


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_two_processes_train_and_evaluate_exactly(data_config, tmp_path):
  workdir = tmp_path / 'run'
  common = ['--config=configs/vgg11.py', f'--workdir={workdir}',
            f'--config.data_source={data_config.data_source}',
            f'--config.data_dir={tmp_path / "tfds"}', '--config.image_size=32',
            '--config.model.width=8', '--config.model.hidden_units=32',
            '--config.eval_batch_size=12']
  trained = run_processes([*common, '--config.batch_size=16', '--config.num_epochs=2'])
  for code, stderr in trained:
    assert code == 0, stderr[-3000:]
  history = files.read_history(workdir / 'history.csv')
  assert [row['epoch'] for row in history] == [1, 2]
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['1', '2']  # The two newest.
  best = min(history, key=lambda row: row['val_loss'])

  for code, stderr in run_processes([*common, '--mode=evaluate']):
    assert code == 0, stderr[-3000:]
  two_processes = json.loads((workdir / 'eval_results.json').read_text())
  # One process (this one, what `--mode=evaluate` runs, with the same overrides as above).
  config = vgg11.get_config()
  config.update(data_source=data_config.data_source, data_dir=str(tmp_path / 'tfds'),
                image_size=32, eval_batch_size=12)
  config.model.update(width=8, hidden_units=32)
  predict.evaluate_workdir(config, str(workdir))
  one_process = json.loads((workdir / 'eval_results.json').read_text())
  # Each process evaluated its half (padded and masked); together every image counted once.
  assert two_processes['num_images'] == one_process['num_images'] == 32
  assert two_processes['loss'] == pytest.approx(one_process['loss'], abs=1e-6)
  assert two_processes['accuracy'] == one_process['accuracy']
  assert two_processes['loss'] == pytest.approx(best['val_loss'], abs=1e-5)
