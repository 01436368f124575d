"""The benchmarks run end to end, import no TensorFlow; CPU flags; bf16 training converges."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from configs import default
from vgg_flax import models
from vgg_flax import platform
from vgg_flax import sharding
from vgg_flax import steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_ENV = dict(os.environ, JAX_PLATFORMS='cpu')


def run_python(args, timeout=240):
  return subprocess.run([sys.executable] + args, cwd=REPO, env=CPU_ENV, capture_output=True,
                        text=True, timeout=timeout, check=False)


def test_throughput_writes_json_with_positive_numbers(tmp_path):
  out = tmp_path / 'result.json'
  result = run_python([
      'benchmarks/throughput.py', '--depth=11', '--width=8', '--hidden_units=16',
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
      from vgg_flax import models, steps, preprocess, platform
      loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))
      assert not loaded, loaded
      print('NO_TF')
  ''')
  result = run_python(['-c', script])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'NO_TF' in result.stdout


def test_cpu_flags_keep_user_flags(monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('XLA_FLAGS', '--xla_a=1 --xla_b=user')
  flags = platform.configure_cpu_flags(('--xla_b=ours', '--xla_c=ours'))
  assert flags.split() == ['--xla_a=1', '--xla_b=user', '--xla_c=ours']


def test_cpu_flags_left_alone_on_accelerators(monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  monkeypatch.setenv('XLA_FLAGS', '--xla_a=1')
  assert platform.configure_cpu_flags(('--xla_c=ours',)) == '--xla_a=1'
  assert os.environ['XLA_FLAGS'] == '--xla_a=1'


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
  mesh = sharding.create_mesh()
  model = models.create_model(config.model, num_classes=4, dtype=config.dtype)
  schedule = steps.create_learning_rate_schedule(config, steps_per_epoch=10)
  state, state_sharding = steps.create_sharded_train_state(
      model, steps.create_optimizer(config, schedule), jax.random.key(0), 32, mesh)
  train = steps.jit_train_step(config, schedule, state_sharding, mesh)
  batch = sharding.to_global_batch(learnable_batch(), sharding.data_sharding(mesh))
  losses = []
  for _ in range(num_steps):
    state, step_metrics = train(state, batch)
    losses.append(float(step_metrics.compute()['loss']))
  return losses


@pytest.mark.parametrize('dtype', ['bfloat16'])
def test_bfloat16_training_converges_like_float32(dtype):
  """bf16 compute (float32 params) learns as float32 does: same start, same loss region."""
  reference, lowered = train_losses('float32'), train_losses(dtype)
  np.testing.assert_allclose(lowered[0], reference[0], rtol=0.05)
  assert np.mean(reference[-5:]) < 0.4 * reference[0], reference
  assert np.mean(lowered[-5:]) < 0.4 * lowered[0], lowered
  # Not worse than float32 beyond noise (on this data bf16 often ends a little lower).
  assert np.mean(lowered[-5:]) < np.mean(reference[-5:]) + 0.1 * reference[0]
