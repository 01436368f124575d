"""A test process that dies ends the run at once, naming the test, under either runner.

The suite's own pytest.ini settings run three tiny test files in a subprocess: one whose
test kills its process with SIGSEGV (as a native library's crash does), and two that pass.
"""

import configparser
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CRASHING_TEST = '''
import os
import signal


def test_dies_like_a_native_crash():
  os.kill(os.getpid(), signal.SIGSEGV)
'''


def suite_options() -> str:
  """The [pytest] section of the project's pytest.ini, less the test paths."""
  parser = configparser.ConfigParser()
  parser.read(REPO / 'pytest.ini')
  options = dict(parser['pytest'])
  options.pop('testpaths')
  return '[pytest]\n' + ''.join(f'{key} = {value}\n' for key, value in options.items())


@pytest.mark.parametrize('runner', [[], ['-n', '0']], ids=['xdist', 'one_process'])
def test_crashing_test_fails_the_run_promptly_with_its_name(tmp_path, runner):
  (tmp_path / 'pytest.ini').write_text(suite_options())
  (tmp_path / 'test_a_crash.py').write_text(CRASHING_TEST)
  for name in ('b', 'c'):
    (tmp_path / f'test_{name}_passes.py').write_text(f'def test_{name}():\n  pass\n')
  result = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', *runner],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
  output = result.stdout + result.stderr
  assert result.returncode != 0
  assert 'test_a_crash.py' in output and 'test_dies_like_a_native_crash' in output


def test_each_worker_gets_an_equal_share_of_the_cpus():
  from conftest import worker_cpus  # pylint: disable=g-import-not-at-top
  assert [worker_cpus(f'gw{i}', 2, [0, 1]) for i in range(2)] == [{0}, {1}]
  assert [worker_cpus(f'gw{i}', 2, list(range(8))) for i in range(2)] == [
      {0, 2, 4, 6}, {1, 3, 5, 7}]
  assert worker_cpus('gw2', 3, [4, 5, 6, 7]) == {6}
  assert worker_cpus(None, 1, [0, 1]) is None  # One process: `-n 0`.
  assert worker_cpus('gw0', 2, [0]) is None  # Fewer CPUs than workers: no pinning.
