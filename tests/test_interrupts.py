"""`vgg_flax.train.interrupts` on its own: a first signal outside training, in a fresh process."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

SIGNAL_DURING_AN_IMPORT = """
import os, signal, sys, threading, time
from vgg_flax.train import interrupts
interrupts.install()  # As main.py does: the first signal raises.
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()  # TF takes seconds.
try:
  import tensorflow
  print('imported', tensorflow.__version__)
  time.sleep(5)
  print('not stopped')
except interrupts.Interrupted as stop:
  print(stop, 'exit', stop.exit_code)
"""


@pytest.mark.slow  # A fresh process, to import TensorFlow in.
def test_a_signal_during_an_import_is_raised_once_the_import_is_done():
  # Raised inside TensorFlow's native initialisation, it aborts the process (status -6).
  result = subprocess.run([sys.executable, '-c', SIGNAL_DURING_AN_IMPORT], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == ['imported 2.21.0', 'stopped by SIGTERM. exit 143']
