r"""Compile time of a first start against a restart with JAX's persistent compilation cache.

Starts two fresh processes one after the other, sharing an empty cache folder. Each enables
the cache as `main.py` does (`vgg_flax.cli.compile_cache.enable_compilation_cache`), then lowers
(traces) and compiles the jitted init of the train state and the project's train and eval
steps for a config; the first fills the cache, the second loads from it. Lowering is timed
apart: it runs in both (the cache key is computed from its result).

  python -m benchmarks.compilation_cache --depth=16 --batch_size=64 --image_size=64

Needs only JAX, flax, optax and numpy (plus ml_collections where installed).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import bench_config
from vgg_flax.cli import compile_cache


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  bench_config.define_model_flags(values, depth=16)
  flags.DEFINE_integer('eval_batch_size', 256, '', flag_values=values)
  flags.DEFINE_string('json', '', 'Write the results here.', flag_values=values)
  flags.DEFINE_string(
      'child', '', '(set by the parent process)', flag_values=values)
  return bench_config.parse_flags(values, argv)


def compile_once(args: flags.FlagValues) -> dict[str, float]:
  """In a fresh process: seconds to lower and to compile the init, train and eval programs."""
  # Imported here, in the child: the parent only starts and times the children.
  import jax  # pylint: disable=g-import-not-at-top
  from vgg_flax.core import factory  # pylint: disable=g-import-not-at-top
  from vgg_flax.core import sharding  # pylint: disable=g-import-not-at-top
  from vgg_flax.core import steps  # pylint: disable=g-import-not-at-top
  config = bench_config.get_config(depth=args.depth, width=args.width,
                                   hidden_units=args.hidden_units, image_size=args.image_size,
                                   batch_size=args.batch_size,
                                   eval_batch_size=args.eval_batch_size)
  config.compilation_cache_dir = args.child
  compile_cache.enable_compilation_cache(config)
  compiled, state = factory.create(config, num_classes=200, steps_per_epoch=100,
                                   abstract=True)
  size, data = config.image_size, sharding.data_sharding(compiled.mesh)

  def batch(n, mask):
    shapes = {'image': ((n, size, size, 3), 'uint8'), 'label': ((n,), 'int32')}
    if mask:
      shapes['mask'] = ((n,), 'bool')
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=data)
            for k, (shape, dtype) in shapes.items()}

  programs = {
      'init': (compiled.init_state, (jax.random.key(config.seed),)),
      'train': (compiled.train_step, (state, batch(config.batch_size, False))),
      'eval': (compiled.eval_step, (steps.model_variables(state),
                                    batch(config.eval_batch_size, True)))}
  times = {}
  for name, (jitted, arguments) in programs.items():
    start = time.perf_counter()
    lowered = jitted.lower(*arguments)  # Tracing and lowering: the cache cannot skip it.
    times[f'{name}_lower_s'] = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()  # XLA's compilation, or a load from the cache.
    times[f'{name}_compile_s'] = time.perf_counter() - start
  times['compile_s'] = sum(v for k, v in times.items() if k.endswith('_compile_s'))
  times['lower_s'] = sum(v for k, v in times.items() if k.endswith('_lower_s'))
  times['process_s'] = compile_cache.seconds_since_start()
  return times


def start_process(argv: list[str], cache: str) -> dict[str, float]:
  """Runs `compile_once` in a new Python process; returns its times."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, '-m', 'benchmarks.compilation_cache', *argv, f'--child={cache}'],
      capture_output=True, text=True, check=True, cwd=repo)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.child:
    print(json.dumps(compile_once(args)))
    return {}
  forwarded = [a for a in argv if not a.startswith('--json')]
  with tempfile.TemporaryDirectory() as cache:
    first = start_process(forwarded, cache)
    second = start_process(forwarded, cache)
    cache_mib = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache)) / 2**20
  print(f'VGG-{args.depth} width {args.width}, {args.image_size} px, batch {args.batch_size} '
        f'(eval {args.eval_batch_size}); cache {cache_mib:.0f} MiB')
  print('| seconds | first start | restart (cache) | speed-up |')
  print('| --- | --- | --- | --- |')
  for key in first:
    print(f'| {key[:-2]} | {first[key]:.2f} | {second[key]:.2f} | '
          f'{first[key] / second[key]:.1f}x |')
  report = {'args': args.flag_values_dict(), 'first': first, 'restart': second,
            'cache_mib': cache_mib}
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
