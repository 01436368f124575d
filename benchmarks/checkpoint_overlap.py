r"""Does saving stall training? An epoch's steps with and without the checkpoint saves before it.

At the end of an epoch the host loop saves `best/` (model variables) and `checkpoints/` (the
whole train state with Adam's moments) through orbax's asynchronous `CheckpointManager`s
(`vgg_flax.workdir.checkpoints.WorkdirCheckpoints`): `save` returns once the arrays are copied off
the device, the files are written by a background thread while the next epoch trains, and
the next save (and the end of training) waits for the previous one. This measures, in one
process and alternating repetitions:

- `train`: N train steps alone;
- `save + train`: both saves, then the same N steps (the async save overlapping them);
- `blocking save`: both saves waited for at once (what a synchronous save would cost);

and reports the stall (how much longer the steps took, plus any write still running after
them) against the blocking save: the share of the save hidden behind training.

  python -m benchmarks.checkpoint_overlap --depth=16 --steps=3 --repeats=2
"""

import json
import os
import tempfile
import time


from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config
from benchmarks import throughput  # pylint: disable=g-import-not-at-top
from vgg_flax.workdir import checkpoints as checkpointing  # pylint: disable=g-import-not-at-top
from vgg_flax.core import models  # pylint: disable=g-import-not-at-top
from vgg_flax.core import steps  # pylint: disable=g-import-not-at-top


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  bench_config.define_model_flags(values, depth=16)
  flags.DEFINE_integer('steps', 3, 'Train steps of the "epoch".', flag_values=values)
  flags.DEFINE_integer('repeats', 2, 'Alternating repetitions.', flag_values=values)
  flags.DEFINE_string('workdir', '', "Where to save; '' = a temporary folder.", flag_values=values)
  flags.DEFINE_string('json', '', 'Write the results here.', flag_values=values)
  return bench_config.parse_flags(values, argv)


def folder_mib(path: str) -> float:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names) / 2**20


class SaveBench:
  """The project's compiled train step on a fixed batch, and the workdir's checkpoints."""

  def __init__(self, args: flags.FlagValues, workdir: str):
    bench_args = throughput.parse_args([
        f'--depth={args.depth}', f'--width={args.width}', f'--hidden_units={args.hidden_units}',
        f'--image_size={args.image_size}', f'--batch_size={args.batch_size}',
        f'--eval_batch_size={args.batch_size}'])
    self.project = throughput.ProjectBench(bench_args, 'float32')
    # One epoch kept, so the folder's size is what each epoch's saves write.
    self.checkpoints = checkpointing.WorkdirCheckpoints(workdir, max_to_keep=1)
    self.epoch = 0
    self.parameters = models.count_params(self.project.state.params)

  def save(self) -> float:
    """Both end-of-epoch saves, as the loop makes them; seconds until `save` returned."""
    self.epoch += 1
    loop = {'epoch': self.epoch, 'history': []}
    start = time.perf_counter()
    self.checkpoints.save_best(self.epoch, steps.model_variables(self.project.state), loop)
    self.checkpoints.save_latest(self.epoch, self.project.state, loop)
    return time.perf_counter() - start

  def train(self, n: int) -> float:
    return self.project.time_train(n)

  def wait(self) -> float:
    start = time.perf_counter()
    self.checkpoints.wait_until_finished()
    return time.perf_counter() - start


def measure(bench: SaveBench, args: flags.FlagValues) -> dict[str, float]:
  """Median seconds of each variant over alternating repetitions."""
  bench.train(1)  # Warm-up: compiled already, but the first run allocates.
  bench.save()
  bench.wait()
  times = {'train': [], 'save_and_train': [], 'save_call': [], 'left_after_train': [],
           'blocking_save': []}
  for _ in range(args.repeats):
    times['train'].append(bench.train(args.steps))
    call = bench.save()
    times['save_call'].append(call)
    times['save_and_train'].append(call + bench.train(args.steps))
    times['left_after_train'].append(bench.wait())
    times['blocking_save'].append(bench.save() + bench.wait())
  return {name: float(np.median(values)) for name, values in times.items()}


def main(argv=None) -> dict:
  args = parse_args(argv)
  with tempfile.TemporaryDirectory() as temporary:
    workdir = args.workdir or temporary
    bench = SaveBench(args, workdir)
    seconds = measure(bench, args)
    bench.checkpoints.close()
    size_mib = folder_mib(workdir)
  longer = seconds['save_and_train'] - seconds['train']
  # A save that outlives these few steps would hold up the next save: counted as a stall.
  stall = longer + seconds['left_after_train']
  hidden = 1.0 - stall / seconds['blocking_save']
  report = {'device': jax.devices()[0].device_kind, 'args': args.flag_values_dict(),
            'parameters': bench.parameters, 'checkpoint_mib': size_mib, 'seconds': seconds,
            'epoch_longer_s': longer, 'stall_s': stall, 'hidden_fraction': hidden}
  print(f'VGG-{args.depth} width {args.width}, {bench.parameters / 1e6:.1f}M parameters, '
        f'{args.image_size} px, batch {args.batch_size}, {args.steps} steps, '
        f'{jax.devices()[0].device_kind}; both checkpoints {size_mib:.0f} MiB on disk')
  print('| seconds (median) | |')
  print('| --- | --- |')
  for name, value in seconds.items():
    print(f'| {name} | {value:.2f} |')
  print(f'| epoch longer by (save_and_train - train) | {longer:.2f} |')
  print(f'Share of the blocking save hidden behind training: {100 * hidden:.0f}% '
        f'(stall {stall:.2f} s of {seconds["blocking_save"]:.2f} s)')
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
