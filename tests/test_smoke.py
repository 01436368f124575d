"""The README's first command, as a user runs it: the generated sample, well above chance."""

import os
import subprocess
import sys

import pytest

from configs import smoke
from vgg_flax.workdir import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # Draws the sample, prepares it and trains ten epochs: minutes on 2 cores.
def test_the_first_command_trains_the_smoke_config_well_above_chance(tmp_path):
  # The user's XLA flags (conftest compiles the suite's tiny programs at -O0): this run trains
  # for minutes, and its accuracy and time are the README's.
  env = dict(os.environ, XLA_FLAGS=os.environ['VGG_FLAX_USER_XLA_FLAGS'], JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/smoke.py', f'--workdir={tmp_path / "run"}',
       f'--config.data_dir={tmp_path / "data"}', '--config.progress_bar=False'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  history = files.read_history(tmp_path / 'run' / 'history.csv')
  assert [row['epoch'] for row in history] == list(range(1, len(history) + 1))
  assert max(row['val_accuracy'] for row in history) >= smoke.EXPECTED_MIN_VAL_ACCURACY
