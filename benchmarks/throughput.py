r"""Images per second of the project's jitted train and eval steps, beside PyTorch.

Measures exactly what training runs: `vgg_flax.core.steps.train_step` (on-device augmentation,
forward, backward, Adam update, BatchNorm statistics, metrics) and `eval_step`, built by
`vgg_flax.core.factory` as training builds them, for a one-axis mesh. With `--reference=torch` it
also times the original's architecture in PyTorch (`benchmarks.torch_reference`) in each
of its CPU settings, alternating with the project repetition by repetition, so that a noisy
machine affects every contender alike. Ratios are against the best PyTorch setting.

  python -m benchmarks.throughput --depth=16 --batch_size=64 --eval_batch_size=256 \
      --image_size=64 --dtype=float32,bfloat16 --reference=torch --json=/tmp/vgg16.json

Imports only jax, flax, optax, numpy (and torch when asked) with the project's model and
step modules: no TensorFlow, clu or ml_collections needed, so it runs on GPU hosts that carry
JAX alone.
"""

import json
import os
import sys
import time


from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config  # pylint: disable=g-import-not-at-top
from vgg_flax.core import factory  # pylint: disable=g-import-not-at-top
from vgg_flax.core import sharding  # pylint: disable=g-import-not-at-top
from vgg_flax.core import steps  # pylint: disable=g-import-not-at-top

NUM_CLASSES = 200


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  bench_config.define_model_flags(values, depth=11)
  flags.DEFINE_integer('eval_batch_size', 256, '', flag_values=values)
  flags.DEFINE_string(
      'dtype', 'float32', "'float32', 'bfloat16' or both, comma-separated (each is timed).",
      flag_values=values)
  flags.DEFINE_enum('reference', 'none', ['torch', 'none'], '', flag_values=values)
  flags.DEFINE_string(
      'torch_settings', 'torch_fp32,torch_channels_last,torch_bf16',
      'PyTorch settings to time (see torch_reference.SETTINGS).', flag_values=values)
  flags.DEFINE_integer('repeats', 5, 'Timed repetitions (median).', flag_values=values)
  flags.DEFINE_integer('warmup', 1, 'Untimed steps after compiling.', flag_values=values)
  flags.DEFINE_integer('steps', 1, 'Steps per timed repetition.', flag_values=values)
  flags.DEFINE_multi_string(
      'variant', [],
      "Also time the project compiled with extra XLA options, as 'LABEL@name=value;name=value' "
      "(repeatable): a flag's effect measured in one process, alternating with the default.",
      flag_values=values)
  flags.DEFINE_string(
      'cpu_conv_grad', '',
      "'taps', 'xla' or both, comma-separated: each is timed as its own contender (suffix +taps /"
      " +xla); '' = the config's default.", flag_values=values)
  flags.DEFINE_string('json', '', 'Write the results here.', flag_values=values)
  args = bench_config.parse_flags(values, argv)
  check_torch_settings(args)
  return args


def make_config(args: flags.FlagValues, dtype: str, cpu_conv_grad: str = ''):
  """The default config with the benchmark's model and batch sizes."""
  config = bench_config.get_config(
      depth=args.depth, width=args.width, hidden_units=args.hidden_units,
      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
      image_size=args.image_size, dtype=dtype)
  config.cpu_conv_grad = cpu_conv_grad or config.cpu_conv_grad
  return config


def fake_batches(config, mesh) -> tuple[dict, dict]:
  """One uint8 train batch and one masked eval batch, already on the devices."""
  rng = np.random.default_rng(0)
  size = config.image_size

  def batch(n, mask):
    host = {'image': rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            'label': rng.integers(0, NUM_CLASSES, (n,)).astype(np.int32)}
    if mask:
      host['mask'] = np.ones(n, bool)
    return sharding.to_global_batch(host, sharding.data_sharding(mesh))

  return batch(config.batch_size, False), batch(config.eval_batch_size, True)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
  """'LABEL@name=value;name=value' -> (LABEL, {name: value})."""
  label, _, options = text.partition('@')
  pairs = (item.split('=', 1) for item in options.split(';') if item)
  booleans = {'true': True, 'false': False}  # XLA wants real bools for bool options.
  return label, {name.lstrip('-'): booleans.get(value.lower(), value) for name, value in pairs}


def flops_of(compiled) -> float:
  """Floating-point operations of one call, from XLA's cost analysis (0 if unknown)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per computation.
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', 0.0))


class ProjectBench:
  """The project's compiled train and eval steps for one compute dtype."""

  def __init__(self, args: flags.FlagValues, dtype: str, variant: str = '',
               cpu_conv_grad: str = ''):
    label, options = parse_variant(variant) if variant else ('', {})
    self.name = (f'jax_{dtype}' + (f'+{cpu_conv_grad}' if cpu_conv_grad else '')
                 + (f'+{label}' if label else ''))
    config = make_config(args, dtype, cpu_conv_grad)
    self.compiled, self.state = factory.create(config, num_classes=NUM_CLASSES,
                                               steps_per_epoch=100)
    self.batch, self.eval_batch = fake_batches(config, self.compiled.mesh)
    start = time.perf_counter()
    # Compiler options override XLA_FLAGS for this executable alone.
    self.train = self.compiled.train_step.lower(self.state, self.batch).compile(options or None)
    self.compile_train_s = time.perf_counter() - start
    start = time.perf_counter()
    self.evaluate = self.compiled.eval_step.lower(steps.model_variables(self.state),
                                                  self.eval_batch).compile(options or None)
    self.compile_eval_s = time.perf_counter() - start
    self.train_flops = flops_of(self.train) / config.batch_size
    self.eval_flops = flops_of(self.evaluate) / config.eval_batch_size

  def time_train(self, n: int) -> float:
    """Seconds for `n` train steps (the state is donated, so each step feeds the next)."""
    start = time.perf_counter()
    for _ in range(n):
      self.state, step_metrics = self.train(self.state, self.batch)
    jax.block_until_ready((self.state, step_metrics))
    return time.perf_counter() - start

  def time_eval(self, n: int) -> float:
    """Seconds for `n` evaluation batches."""
    start = time.perf_counter()
    variables = steps.model_variables(self.state)
    for _ in range(n):
      result = self.evaluate(variables, self.eval_batch)
    jax.block_until_ready(result)
    return time.perf_counter() - start


def create_torch_benches(args: flags.FlagValues) -> list:
  """One PyTorch bench per requested setting (imported only when asked for)."""
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  device = torch_reference.default_device()
  names = [n for n in args.torch_settings.split(',') if n]
  if device.type == 'cuda':
    names = [n for n in names if n != 'torch_fp32']  # Slow and uninteresting on a GPU.
  benches = []
  for name in names:
    bench = torch_reference.TorchBench(
        torch_reference.SETTINGS[name], depth=args.depth, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, image_size=args.image_size, width=args.width,
        hidden_units=args.hidden_units, num_classes=NUM_CLASSES, device=device)
    bench.name = name
    benches.append(bench)
  return benches


def measure(benches: list, args: flags.FlagValues) -> dict[str, dict]:
  """Median images/s of each bench; repetitions alternate between the benches."""
  for bench in benches:
    bench.time_train(args.warmup)
    bench.time_eval(args.warmup)
  times = {b.name: {'train': [], 'eval': []} for b in benches}
  for _ in range(args.repeats):
    for bench in benches:
      times[bench.name]['train'].append(bench.time_train(args.steps))
    for bench in benches:
      times[bench.name]['eval'].append(bench.time_eval(args.steps))
  results = {}
  for bench in benches:
    train_s = float(np.median(times[bench.name]['train'])) / args.steps
    eval_s = float(np.median(times[bench.name]['eval'])) / args.steps
    results[bench.name] = {'train_img_s': args.batch_size / train_s,
                           'eval_img_s': args.eval_batch_size / eval_s,
                           'train_step_s': train_s, 'eval_step_s': eval_s}
    if isinstance(bench, ProjectBench):
      results[bench.name].update(
          compile_train_s=bench.compile_train_s, compile_eval_s=bench.compile_eval_s,
          train_gflop_per_image=bench.train_flops / 1e9,
          eval_gflop_per_image=bench.eval_flops / 1e9)
  return results


def add_ratios(results: dict[str, dict]) -> dict[str, str]:
  """Each project result divided by the best PyTorch setting's (train and eval apart)."""
  torch_names = [n for n in results if n.startswith('torch')]
  if not torch_names:
    return {}
  best = {kind: max(torch_names, key=lambda n, k=kind: results[n][f'{k}_img_s'])
          for kind in ('train', 'eval')}
  for name, row in results.items():
    if name.startswith('jax'):
      for kind in ('train', 'eval'):
        row[f'{kind}_vs_best_torch'] = row[f'{kind}_img_s'] / results[best[kind]][f'{kind}_img_s']
  return best


def format_table(results: dict[str, dict], args: flags.FlagValues) -> str:
  """A Markdown table: one row per contender."""
  lines = [f'VGG-{args.depth}, {args.image_size} px, train batch {args.batch_size}, eval batch '
           f'{args.eval_batch_size}, {jax.devices()[0].device_kind}, median of {args.repeats}',
           '| setting | train img/s | eval img/s | train vs best torch | eval vs best torch '
           '| compile s (train/eval) | GFLOP/img (train) |',
           '| --- | --- | --- | --- | --- | --- | --- |']
  for name, row in results.items():
    ratio = lambda k, r=row: f'{r[k]:.2f}x' if k in r else ''
    compile_s = (f"{row['compile_train_s']:.1f} / {row['compile_eval_s']:.1f}"
                 if 'compile_train_s' in row else '')
    gflop = f"{row['train_gflop_per_image']:.2f}" if 'train_gflop_per_image' in row else ''
    lines.append(f"| {name} | {row['train_img_s']:.1f} | {row['eval_img_s']:.1f} | "
                 f"{ratio('train_vs_best_torch')} | {ratio('eval_vs_best_torch')} | "
                 f'{compile_s} | {gflop} |')
  return '\n'.join(lines)


def check_torch_settings(args: flags.FlagValues) -> None:
  """Ends with a one-line usage error for a `--torch_settings` name that does not exist."""
  if args.reference != 'torch':
    return
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  unknown = [n for n in args.torch_settings.split(',') if n and n not in torch_reference.SETTINGS]
  if unknown:
    print(f'error: --torch_settings: unknown {", ".join(map(repr, unknown))}; choose '
          f'from {", ".join(torch_reference.SETTINGS)}.', file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> dict:
  args = parse_args(argv)
  benches = [ProjectBench(args, dtype, variant, grad) for dtype in args.dtype.split(',') if dtype
             for grad in args.cpu_conv_grad.split(',') for variant in [''] + args.variant]
  if args.reference == 'torch':
    benches += create_torch_benches(args)
  results = measure(benches, args)
  best = add_ratios(results)
  print(format_table(results, args), flush=True)
  report = {'args': args.flag_values_dict(), 'device': jax.devices()[0].device_kind,
            'platform': jax.default_backend(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'best_torch': best, 'results': results}
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
