r"""Peak device memory of one train step per depth and image size, from XLA's memory analysis.

Compiles the project's train step (nothing is allocated or run: the state and batch are
abstract) and reads `compiled.memory_analysis()`: the state and batch passed in, the outputs
not written over the donated state, and the temporaries (activations, gradients,
workspace). Their sum is what the step needs on the device at its peak.

  python -m benchmarks.memory --depths=11,13,16,19 --image_sizes=64,224 --batch_size=64
  python -m benchmarks.memory --depths=16 --image_sizes=224 --grad_accum_steps=1,4

The figures come from the compiler of the backend it runs on: run it on the GPU you plan to
use (the CPU compiler's buffer assignment differs from the GPU's in the temporaries).
"""

import json
import time


from absl import flags
import jax  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config  # pylint: disable=g-import-not-at-top
from vgg_flax.core import factory  # pylint: disable=g-import-not-at-top
from vgg_flax.core import sharding  # pylint: disable=g-import-not-at-top

GIB = 2**30


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string('depths', '11,13,16,19', '', flag_values=values)
  flags.DEFINE_string('image_sizes', '64,224', '', flag_values=values)
  flags.DEFINE_integer('batch_size', 64, '', flag_values=values)
  flags.DEFINE_string('grad_accum_steps', '1', 'Comma-separated values to try.', flag_values=values)
  flags.DEFINE_string('dtype', 'float32', '', flag_values=values)
  flags.DEFINE_integer('width', 64, '', flag_values=values)
  flags.DEFINE_integer('hidden_units', 4096, '', flag_values=values)
  flags.DEFINE_integer('num_classes', 200, '', flag_values=values)
  flags.DEFINE_string('json', '', 'Write the results here.', flag_values=values)
  return bench_config.parse_flags(values, argv)


def train_step_memory(config, num_classes: int) -> dict[str, float]:
  """Bytes of the compiled train step for `config`, by kind, and their sum (`peak`)."""
  compiled, state = factory.create(config, num_classes=num_classes, steps_per_epoch=100,
                                   abstract=True)  # Shapes only: nothing is allocated.
  size, batch_sharding = config.image_size, sharding.data_sharding(compiled.mesh)
  batch = {'image': jax.ShapeDtypeStruct((config.batch_size, size, size, 3), 'uint8',
                                         sharding=batch_sharding),
           'label': jax.ShapeDtypeStruct((config.batch_size,), 'int32', sharding=batch_sharding)}
  start = time.perf_counter()
  analysis = compiled.train_step.lower(state, batch).compile().memory_analysis()
  seconds = time.perf_counter() - start
  arguments = analysis.argument_size_in_bytes
  outputs = analysis.output_size_in_bytes - analysis.alias_size_in_bytes  # Not in place.
  temps = analysis.temp_size_in_bytes
  return {'arguments': arguments, 'outputs': outputs, 'temporaries': temps,
          'peak': arguments + outputs + temps,
          'parameters': sum(x.size for x in jax.tree.leaves(state.params)),
          'compile_s': seconds}


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  rows = []
  print(f'{jax.devices()[0].device_kind} ({jax.default_backend()}), batch {args.batch_size}, '
        f'{args.dtype}, width {args.width}, Adam; GiB per device')
  print('| depth | image px | grad accum | parameters | state + batch | temporaries '
        '| peak |')
  print('| --- | --- | --- | --- | --- | --- | --- |')
  for depth in (int(d) for d in args.depths.split(',')):
    for image_size in (int(s) for s in args.image_sizes.split(',')):
      for accum in (int(a) for a in args.grad_accum_steps.split(',')):
        config = bench_config.get_config(
            depth=depth, width=args.width, hidden_units=args.hidden_units,
            image_size=image_size, batch_size=args.batch_size, dtype=args.dtype,
            grad_accum_steps=accum)
        memory = train_step_memory(config, args.num_classes)
        rows.append({'depth': depth, 'image_size': image_size, 'grad_accum_steps': accum,
                     **memory})
        print(f"| {depth} | {image_size} | {accum} | {memory['parameters'] / 1e6:.1f}M | "
              f"{memory['arguments'] / GIB:.2f} | {memory['temporaries'] / GIB:.2f} | "
              f"{memory['peak'] / GIB:.2f} |", flush=True)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump({'device': jax.devices()[0].device_kind, 'args': args.flag_values_dict(),
                 'rows': rows}, f,
                indent=2)
  return rows


if __name__ == '__main__':
  main()
