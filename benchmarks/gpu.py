r"""Accelerator benchmark: the project's steps beside PyTorch, with MFU and a recompile check.

For VGG-11 and VGG-16 (`--depths`) in float32 and bfloat16 (`--dtypes`) it times the
project's jitted train step (augmentation, forward, backward, Adam, BatchNorm statistics)
and eval step, alternating with the original architecture in PyTorch (channels_last fp32
and channels_last + bf16 autocast) in the same process, and reports img/s, model FLOP
utilisation (achieved FLOP/s over the device's peak, `PEAK_TFLOPS`), compile times and
whether the jitted steps recompile after their first call (they must not).

  bash benchmarks/gpu.sh OUT_DIR            # the prepared run, under 8 minutes on a GPU
  python -m benchmarks.gpu --depths=16 --dtypes=bfloat16 --steps=20

Needs jax, flax, optax, clu, numpy and (for the comparison) PyTorch: no TensorFlow or TFDS.
Without a GPU or TPU it says so in a banner and runs tiny settings on
the CPU (`--cpu_full` keeps the sizes), to prove the script end to end.
"""

import json
import pathlib
import sys
import tempfile
import time


from absl import flags
import jax  # pylint: disable=g-import-not-at-top
from jax import monitoring  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config
from configs import default
from benchmarks import throughput  # pylint: disable=g-import-not-at-top
from vgg_flax.cli import compile_cache  # pylint: disable=g-import-not-at-top
from vgg_flax.core import steps  # pylint: disable=g-import-not-at-top

# Dense peak TFLOP/s by device kind (first matching lower-case substring wins): (bf16, fp32).
# fp32 is the TF32 tensor-core peak on NVIDIA GPUs (what cuDNN and XLA use for float32
# convolutions by default) and the bf16 peak on TPUs (float32 matmuls run as bf16 passes).
PEAK_TFLOPS = (
    ('h200', (989.4, 494.7)),
    ('gh200', (989.4, 494.7)),
    ('h100 pcie', (756.0, 378.0)),
    ('h100 nvl', (835.0, 417.5)),
    ('h100', (989.4, 494.7)),  # SXM
    ('b200', (2250.0, 1100.0)),
    ('a100', (312.0, 156.0)),
    ('l40s', (362.1, 183.0)),
    ('l4', (121.0, 60.0)),
    ('tpu v6 lite', (918.0, 918.0)),  # v6e
    ('tpu v5 lite', (197.0, 197.0)),  # v5e
    ('tpu v5', (459.0, 459.0)),  # v5p
    ('tpu v4', (275.0, 275.0)),
)
# On the CPU: tiny sizes, so the fallback proves the script in a minute or two.
CPU_TINY = dict(width=8, hidden_units=64, image_size=32, batch_size=8, eval_batch_size=8,
                warmup=1, steps=1, repeats=2)
TRACE_AND_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                            '/jax/core/compile/backend_compile_duration')


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string('depths', '11,16', '', flag_values=values)
  flags.DEFINE_string('dtypes', 'float32,bfloat16', '', flag_values=values)
  flags.DEFINE_integer('image_size', 64, '', flag_values=values)
  flags.DEFINE_integer('batch_size', 256, '', flag_values=values)
  flags.DEFINE_integer('eval_batch_size', 256, '', flag_values=values)
  flags.DEFINE_integer('width', 64, '', flag_values=values)
  flags.DEFINE_integer('hidden_units', 4096, '', flag_values=values)
  flags.DEFINE_integer('warmup', 3, '', flag_values=values)
  flags.DEFINE_integer('steps', 10, 'Steps per timed repetition.', flag_values=values)
  flags.DEFINE_integer('repeats', 5, 'Timed repetitions (median).', flag_values=values)
  flags.DEFINE_string('torch_settings', 'torch_channels_last,torch_bf16', '', flag_values=values)
  flags.DEFINE_string(
      'peak_tflops', '', "'BF16,FP32' dense peak of this device, if PEAK_TFLOPS lacks it.",
      flag_values=values)
  flags.DEFINE_bool(
      'cpu_full', False, 'On the CPU, keep the given sizes instead of the tiny ones.',
      flag_values=values)
  flags.DEFINE_string('out', '/tmp/vgg_gpu_bench', 'Folder for the results.', flag_values=values)
  args = bench_config.parse_flags(values, argv)
  if jax.default_backend() == 'cpu' and not args.cpu_full:
    for name, value in CPU_TINY.items():
      setattr(args, name, value)
  return args


def peak_flops(device_kind: str, override: str = '') -> dict[str, float] | None:
  """{'bfloat16': FLOP/s, 'float32': FLOP/s} of a device, or None when unknown."""
  if override:
    bf16, fp32 = (float(v) * 1e12 for v in override.split(','))
    return {'bfloat16': bf16, 'float32': fp32}
  kind = device_kind.lower()
  for name, (bf16, fp32) in PEAK_TFLOPS:
    if name in kind:
      return {'bfloat16': bf16 * 1e12, 'float32': fp32 * 1e12}
  return None


def banner(args: flags.FlagValues) -> str:
  """What runs where; on the CPU, a warning that the figures are not accelerator figures."""
  device = jax.devices()[0]
  lines = [f'jax {jax.__version__} on {jax.default_backend()}: {jax.device_count()} x '
           f'{device.device_kind}']
  if jax.default_backend() == 'cpu':
    sizes = ('the given sizes' if args.cpu_full else
             f'tiny settings (width {args.width}, {args.image_size} px, batch {args.batch_size})')
    rule = '=' * 78
    lines = [rule, 'NO GPU OR TPU FOUND: this is the CPU fallback run, with ' + sizes + '.',
             'Its figures say nothing about accelerators. For a GPU install CUDA JAX',
             '(README, "GPU and TPU"); --cpu_full times the full sizes on the CPU.',
             *lines, rule]
  return '\n'.join(lines)


def torch_version() -> str | None:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'
  return f'{torch.__version__} on {cuda}'


def count_recompiles(bench: throughput.ProjectBench, calls: int = 3) -> dict[str, int]:
  """Traces and compiles of the jitted train and eval steps after their first call.

  The timed steps are ahead-of-time compiled; this calls the `jax.jit` functions training
  uses, with the same state and batches, and counts JAX's trace and compile events.
  """
  train, evaluate = bench.compiled.train_step, bench.compiled.eval_step
  events = []

  def listener(event, _duration, **_):
    if event in TRACE_AND_COMPILE_EVENTS:
      events.append(event)

  counts = {}
  monitoring.register_event_duration_secs_listener(listener)
  try:
    for name, call in (('train', lambda: train(bench.state, bench.batch)),
                       ('eval', lambda: (bench.state, evaluate(steps.model_variables(bench.state),
                                                               bench.eval_batch)))):
      for index in range(calls + 1):
        if index == 1:
          events.clear()  # The first call traces and compiles (or loads from the cache).
        bench.state, result = call()
      jax.block_until_ready(result)
      counts[name] = len(events)
  finally:
    monitoring.unregister_event_duration_listener(listener)
  return counts


def add_mfu(results: dict[str, dict], flops_per_image: dict[str, float],
            peaks: dict[str, float] | None) -> None:
  """Achieved FLOP/s over the peak of each row's compute dtype (PyTorch: the same network)."""
  if peaks is None:
    return
  for name, row in results.items():
    dtype = 'bfloat16' if 'bf16' in name or 'bfloat16' in name else 'float32'
    for kind in ('train', 'eval'):
      achieved = row[f'{kind}_img_s'] * flops_per_image[kind]
      row[f'{kind}_mfu'] = achieved / peaks[dtype]


def format_table(depth: int, results: dict[str, dict], recompiles: dict[str, dict],
                 args: flags.FlagValues) -> str:
  lines = [f'VGG-{depth}, width {args.width}, {args.image_size} px, batch {args.batch_size} '
           f'(eval {args.eval_batch_size}), {jax.devices()[0].device_kind}, median of '
           f'{args.repeats} x {args.steps} steps',
           '| setting | train img/s | eval img/s | train MFU | eval MFU | train / eval vs best '
           'torch | compile s (train / eval) | recompiles (train / eval) |',
           '| --- | --- | --- | --- | --- | --- | --- | --- |']
  for name, row in results.items():
    mfu = lambda k, r=row: f'{100 * r[k]:.1f}%' if k in r else 'n/a'
    vs = (f"{row['train_vs_best_torch']:.2f}x / {row['eval_vs_best_torch']:.2f}x"
          if 'train_vs_best_torch' in row else '')
    compile_s = (f"{row['compile_train_s']:.1f} / {row['compile_eval_s']:.1f}"
                 if 'compile_train_s' in row else '')
    again = (f"{recompiles[name]['train']} / {recompiles[name]['eval']}"
             if name in recompiles else '')
    lines.append(f"| {name} | {row['train_img_s']:.1f} | {row['eval_img_s']:.1f} | "
                 f"{mfu('train_mfu')} | {mfu('eval_mfu')} | {vs} | {compile_s} | {again} |")
  return '\n'.join(lines)


def bench_depth(depth: int, args: flags.FlagValues, peaks, use_torch: bool) -> dict:
  """Times every dtype and PyTorch setting for one depth; returns its report."""
  flags = [f'--depth={depth}', f'--width={args.width}', f'--hidden_units={args.hidden_units}',
           f'--image_size={args.image_size}', f'--batch_size={args.batch_size}',
           f'--eval_batch_size={args.eval_batch_size}', f'--warmup={args.warmup}',
           f'--steps={args.steps}', f'--repeats={args.repeats}',
           f'--reference={"torch" if use_torch else "none"}',
           f'--torch_settings={args.torch_settings}']
  bench_args = throughput.parse_args(flags)
  dtypes = [d for d in args.dtypes.split(',') if d]
  project = [throughput.ProjectBench(bench_args, dtype) for dtype in dtypes]
  recompiles = {bench.name: count_recompiles(bench) for bench in project}
  benches = project + (throughput.create_torch_benches(bench_args) if use_torch else [])
  results = throughput.measure(benches, bench_args)
  throughput.add_ratios(results)
  reference = results[project[0].name]
  add_mfu(results, {'train': reference['train_gflop_per_image'] * 1e9,
                    'eval': reference['eval_gflop_per_image'] * 1e9}, peaks)
  print(format_table(depth, results, recompiles, args), '\n', flush=True)
  return {'results': results, 'recompiles': recompiles}


def main(argv=None) -> int:
  start = time.perf_counter()
  args = parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  print(banner(args), flush=True)
  torch_info = torch_version()
  print(f'PyTorch {torch_info}' if torch_info else 'PyTorch not installed: JAX rows only.')
  device_kind = jax.devices()[0].device_kind
  peaks = peak_flops(device_kind, args.peak_tflops)
  print(f'peak TFLOP/s (bf16, fp32): {peaks["bfloat16"] / 1e12:.0f}, '
        f'{peaks["float32"] / 1e12:.0f}' if peaks else
        f'no peak known for {device_kind!r}: MFU left out (give --peak_tflops=BF16,FP32).')
  report = {'device': device_kind, 'platform': jax.default_backend(),
            'jax': jax.__version__, 'torch': torch_info, 'args': args.flag_values_dict(),
            'depths': {}}
  # The AOT-compiled steps go to a throw-away cache, so the recompile check loads them.
  with tempfile.TemporaryDirectory() as cache:
    config = default.get_config()
    config.compilation_cache_dir = cache
    compile_cache.enable_compilation_cache(config)
    for depth in (int(d) for d in args.depths.split(',') if d):
      report['depths'][depth] = bench_depth(depth, args, peaks, torch_info is not None)
      (out / 'gpu_results.json').write_text(json.dumps(report, indent=2))
  report['seconds'] = time.perf_counter() - start
  (out / 'gpu_results.json').write_text(json.dumps(report, indent=2))
  recompiled = [f'VGG-{d} {name}' for d, r in report['depths'].items()
                for name, counts in r['recompiles'].items() if any(counts.values())]
  print(f'{report["seconds"]:.0f} s; results in {out / "gpu_results.json"}')
  if recompiled:
    print(f'FAIL: the jitted steps recompiled after their first call: {recompiled}')
    return 1
  print('OK: no jitted step recompiled after its first call.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
