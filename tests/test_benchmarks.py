"""The benchmarks run end to end, import no TensorFlow; CPU flags; bf16 training converges."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from configs import default
from vgg_flax.core import factory
from vgg_flax.core import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_ENV = dict(os.environ, JAX_PLATFORMS='cpu')


def run_python(args, timeout=240):
  return subprocess.run([sys.executable] + args, cwd=REPO, env=CPU_ENV, capture_output=True,
                        text=True, timeout=timeout, check=False)


@pytest.mark.slow  # Subprocesses: imports and compilation.
def test_throughput_writes_json_with_positive_numbers(tmp_path):
  out = tmp_path / 'result.json'
  result = run_python([
      '-m', 'benchmarks.throughput', '--depth=11', '--width=8', '--hidden_units=16',
      '--batch_size=8', '--eval_batch_size=8', '--image_size=32', '--repeats=2',
      '--reference=torch', '--torch_settings=torch_fp32,torch_bf16', f'--json={out}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert '| jax_float32 |' in result.stdout
  report = json.loads(out.read_text())
  assert set(report['results']) == {'jax_float32', 'torch_fp32', 'torch_bf16'}
  jax_row = report['results']['jax_float32']
  for key in ('train_img_s', 'eval_img_s', 'compile_train_s', 'compile_eval_s',
              'train_gflop_per_image', 'eval_gflop_per_image', 'train_vs_best_torch',
              'eval_vs_best_torch'):
    assert jax_row[key] > 0, key
  assert jax_row['train_gflop_per_image'] > jax_row['eval_gflop_per_image']
  for name in ('torch_fp32', 'torch_bf16'):
    assert report['results'][name]['train_img_s'] > 0
  assert report['best_torch']['train'] in ('torch_fp32', 'torch_bf16')


def test_benchmark_and_step_modules_import_no_tensorflow():
  script = textwrap.dedent('''
      import sys
      sys.argv = ['x']
      from benchmarks import throughput, torch_reference
      from vgg_flax.core import factory, models, steps, preprocess
      from vgg_flax.cli import compile_cache
      loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))
      assert not loaded, loaded
      print('NO_TF')
  ''')
  result = run_python(['-c', script])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'NO_TF' in result.stdout


def learnable_batch(size=32, num_classes=4, seed=0):  # pylint: disable=unused-argument
  """Images whose colour gives away the class, with noise: easy to learn, not trivial."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size).astype(np.int32)
  palette = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [220, 220, 40]])
  noise = rng.normal(0, 40, (size, 32, 32, 3))
  images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
  return {'image': images, 'label': labels}


def train_losses(dtype: str, num_steps: int = 30) -> list[float]:
  config = default.get_config()
  config.image_size, config.batch_size, config.dtype = 32, 32, dtype
  config.learning_rate = 3e-3
  config.model.update(depth=11, width=8, hidden_units=128, pool_type='avg')
  compiled, state = factory.create(config, num_classes=4, steps_per_epoch=10)
  train = compiled.train_step
  batch = sharding.to_global_batch(learnable_batch(), sharding.data_sharding(compiled.mesh))
  losses = []
  for _ in range(num_steps):
    state, step_metrics = train(state, batch)
    losses.append(float(step_metrics.compute()['loss']))
  return losses


@pytest.mark.slow  # Trains two runs of 30 steps.
@pytest.mark.parametrize('dtype', ['bfloat16'])
def test_bfloat16_training_converges_like_float32(dtype):
  """bf16 compute (float32 params) learns as float32 does: same start, same loss region."""
  reference, lowered = train_losses('float32'), train_losses(dtype)
  np.testing.assert_allclose(lowered[0], reference[0], rtol=0.05)
  assert np.mean(reference[-5:]) < 0.4 * reference[0], reference
  assert np.mean(lowered[-5:]) < 0.4 * lowered[0], lowered
  # Not worse than float32 beyond noise (on this data bf16 often ends a little lower).
  assert np.mean(lowered[-5:]) < np.mean(reference[-5:]) + 0.1 * reference[0]


# --- The accelerator script, memory, checkpoint overlap, one-line errors --------------------


def test_unknown_torch_setting_is_a_one_line_error(capsys):
  from benchmarks import throughput  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as exit_info:
    throughput.parse_args(['--reference=torch', '--torch_settings=torch_bf16,torch_amx'])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.splitlines() == [
      "error: --torch_settings: unknown 'torch_amx'; choose from torch_fp32, "
      'torch_channels_last, torch_bf16.']


def test_peak_flops_by_device_kind():
  from benchmarks import gpu  # pylint: disable=g-import-not-at-top
  assert gpu.peak_flops('NVIDIA H100 PCIe')['bfloat16'] == 756e12
  assert gpu.peak_flops('NVIDIA H100 80GB HBM3')['float32'] == pytest.approx(494.7e12)
  assert gpu.peak_flops('NVIDIA A100-SXM4-80GB')['bfloat16'] == 312e12
  assert gpu.peak_flops('TPU v5 lite')['float32'] == 197e12
  assert gpu.peak_flops('cpu') is None
  assert gpu.peak_flops('cpu', '100,50') == {'bfloat16': 100e12, 'float32': 50e12}
  results = {'jax_bfloat16': {'train_img_s': 1000.0, 'eval_img_s': 4000.0},
             'torch_channels_last': {'train_img_s': 500.0, 'eval_img_s': 2000.0}}
  gpu.add_mfu(results, {'train': 3e9, 'eval': 1e9}, {'bfloat16': 10e12, 'float32': 5e12})
  assert results['jax_bfloat16']['train_mfu'] == pytest.approx(0.3)
  assert results['torch_channels_last']['eval_mfu'] == pytest.approx(0.4)


@pytest.mark.slow  # Compiles three configs.
def test_memory_analysis_counts_the_state_and_shrinks_with_micro_batches(capsys):
  from benchmarks import memory  # pylint: disable=g-import-not-at-top
  rows = memory.main(['--depths=11', '--image_sizes=32', '--batch_size=32', '--width=8',
                      '--hidden_units=32', '--grad_accum_steps=1,4'])
  assert [(r['depth'], r['image_size'], r['grad_accum_steps']) for r in rows] == [
      (11, 32, 1), (11, 32, 4)]
  for row in rows:
    assert row['peak'] == row['arguments'] + row['outputs'] + row['temporaries']
    # Params and Adam's two moments (float32), plus the uint8 batch.
    assert row['arguments'] >= 3 * 4 * row['parameters'] + 32 * 32 * 32 * 3
  assert rows[1]['temporaries'] < rows[0]['temporaries']
  assert '| 11 | 32 | 4 |' in capsys.readouterr().out


@pytest.mark.slow  # Runs the benchmark end to end.
def test_checkpoint_overlap_reports_the_saves(tmp_path):
  from benchmarks import checkpoint_overlap  # pylint: disable=g-import-not-at-top
  report = checkpoint_overlap.main(['--depth=11', '--width=8', '--hidden_units=32',
                                    '--image_size=32', '--batch_size=8', '--steps=1',
                                    '--repeats=1', f'--workdir={tmp_path}'])
  seconds = report['seconds']
  assert set(seconds) == {'train', 'save_and_train', 'save_call', 'left_after_train',
                          'blocking_save'}
  assert all(value >= 0 for value in seconds.values())
  assert report['hidden_fraction'] == pytest.approx(
      1 - (seconds['save_and_train'] - seconds['train'] + seconds['left_after_train'])
      / seconds['blocking_save'])
  # checkpoints/ keeps the latest state (params + 2 Adam moments), best/ the params: four
  # float32 copies, which orbax's storage compresses a little (zeros, small moments).
  assert sorted(p.name for p in tmp_path.iterdir()) == ['best', 'checkpoints']
  assert 3 * 4 <= report['checkpoint_mib'] * 2**20 / report['parameters'] <= 6 * 4


# What a fresh GPU host lacks (name prefixes in site-packages): the benchmark needs none of it.
ABSENT_ON_GPU_HOSTS = ('tensorflow', 'tensorboard', 'tf_keras', 'keras')


def absent_on_gpu_hosts(name: str) -> bool:
  return name.startswith(ABSENT_ON_GPU_HOSTS)


def site_without_tensorflow(tmp_path):
  """A Python launcher whose only packages are this venv's, less TensorFlow and TFDS."""
  site = tmp_path / 'site'
  site.mkdir()
  for entry in pathlib.Path(jax.__file__).resolve().parents[1].iterdir():
    if not absent_on_gpu_hosts(entry.name):
      (site / entry.name).symlink_to(entry)
  python = tmp_path / 'python'
  python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages.
  python.chmod(0o755)
  return dict(CPU_ENV, PYTHONPATH=str(site), PYTHON=str(python)), python


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu_without_tensorflow(tmp_path):
  env, python = site_without_tensorflow(tmp_path)
  probe = subprocess.run(
      [str(python), '-c', 'import importlib.util as u; print([m for m in ("tensorflow", '
       '"tensorflow_datasets", "clu", "ml_collections", "jax", "torch") if u.find_spec(m)])'],
      env=env, capture_output=True, text=True, check=True)
  assert probe.stdout.strip() == "['clu', 'ml_collections', 'jax', 'torch']"
  out = tmp_path / 'out'
  result = subprocess.run(['bash', 'benchmarks/gpu.sh', str(out), '--depths=11',
                           '--dtypes=float32'], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stdout[-2000:]
  assert 'NO GPU OR TPU FOUND' in result.stdout
  rows = {line.split('|')[1].strip(): line for line in result.stdout.splitlines()
          if line.startswith('| jax_') or line.startswith('| torch_')}
  assert set(rows) == {'jax_float32', 'torch_channels_last', 'torch_bf16'}
  assert rows['jax_float32'].rstrip().endswith('| 0 / 0 |')  # No recompiles.
  report = json.loads((out / 'gpu_results.json').read_text())
  assert report['platform'] == 'cpu' and list(report['depths']) == ['11']
  assert report['depths']['11']['recompiles'] == {'jax_float32': {'train': 0, 'eval': 0}}
  assert (out / 'gpu_results.txt').read_text() == result.stdout
