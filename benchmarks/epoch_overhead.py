r"""How much the training loop adds to its steps: step time in the loop / the jitted step alone.

Runs `vgg_flax.train.loop.train_epoch` on the generated Tiny ImageNet sample (after a warm-up
that compiles the step and fills the decoded-image cache), then runs the same
batches through the jitted step alone, already on the device and dispatched back to back
(blocked once at the end, as the loop blocks only to log). The two alternate, `--repeats`
times, to share the machine's noise; the overhead is the median of (loop / steps alone) - 1:
what the host loop (input pipeline, transfers, metric merging, logging) costs on top of the
compiled step. A third timing runs the loop around an idle jitted step (it returns the state
unchanged): the host's own work per step, whose share of the step bounds the overhead from
above and, being short, stays precise on a busy machine where two long timings differ by
more than the overhead. `--steps` times that many steps of an epoch instead of all of them.

  python -m benchmarks.epoch_overhead --depth=11 --repeats=3 --json=/tmp/overhead.json

This one needs TensorFlow (the input pipeline is tf.data); `throughput.py` does not.
"""

import dataclasses
import json
import tempfile
import time


from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config
from configs import default  # pylint: disable=g-import-not-at-top
from vgg_flax.core import sharding  # pylint: disable=g-import-not-at-top
from vgg_flax.train import loop as train  # pylint: disable=g-import-not-at-top


class NullWriter:
  """A metric writer that drops everything (the cost of TensorBoard is not the question)."""

  def write_scalars(self, step, scalars):
    del step, scalars


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  bench_config.define_model_flags(values, depth=11, image_size=False)
  flags.DEFINE_string('dtype', 'float32', '', flag_values=values)
  flags.DEFINE_integer('train_per_class', 100, '', flag_values=values)
  flags.DEFINE_integer('log_every_steps', 50, '', flag_values=values)
  flags.DEFINE_integer('repeats', 3, '', flag_values=values)
  flags.DEFINE_integer(
      'steps', 0, 'Steps timed per repeat (the first of the epoch); 0: all.', flag_values=values)
  flags.DEFINE_string('data_dir', '', "Where the sample goes; '' = a temp dir.", flag_values=values)
  flags.DEFINE_string('json', '', '', flag_values=values)
  return bench_config.parse_flags(values, argv)


def make_config(args: flags.FlagValues, data_dir: str):
  config = default.get_config()
  config.sample.enabled = True
  config.sample.train_per_class = args.train_per_class
  config.data_dir = data_dir
  config.model.update(depth=args.depth, width=args.width, hidden_units=args.hidden_units)
  config.batch_size = args.batch_size
  config.dtype = args.dtype
  config.log_every_steps = args.log_every_steps
  config.progress_bar = False
  return config


def time_epoch(trainer, state, epoch: int):
  """Wall seconds of one `train_epoch`, up to its last step's result."""
  start = time.perf_counter()
  state, _ = train.train_epoch(trainer, state, epoch, NullWriter(), hooks=[])
  jax.block_until_ready(state)
  return state, time.perf_counter() - start


def warm_up(trainer, state, steps: int = 2):
  """Compiles the step and fills the decoded-image cache with a few steps of epoch 0."""
  cap = trainer.config.steps_per_epoch
  trainer.config.steps_per_epoch = steps
  try:
    return time_epoch(trainer, state, 0)
  finally:
    trainer.config.steps_per_epoch = cap


def batches_on_device(trainer, epoch: int) -> list[dict]:
  """The epoch's batches (as `train_epoch` reads them), on the device, ready."""
  batch_sharding = sharding.data_sharding(trainer.mesh)
  batches = [sharding.to_global_batch(b, batch_sharding)
             for b in trainer.dataset.train_batches(trainer.config, epoch=epoch)]
  return jax.block_until_ready(batches)


def time_steps(trainer, state, batches: list[dict]):
  """Wall seconds of the jitted step alone over `batches`, dispatched back to back."""
  start = time.perf_counter()
  for batch in batches:
    state, step_metrics = trainer.compiled.train_step(state, batch)
  jax.block_until_ready((state, step_metrics))
  return state, time.perf_counter() - start


def with_idle_step(trainer, state, batch):
  """The trainer with a jitted step that returns the state and a step's metrics unchanged.

  Timing the loop with it gives the host's own work per step (input, transfer, metric
  merging, logging) with no compute to hide behind.
  """
  state, step_metrics = trainer.compiled.train_step(state, batch)
  idle_step = jax.jit(lambda state, batch: (state, step_metrics))
  return state, dataclasses.replace(
      trainer, compiled=dataclasses.replace(trainer.compiled, train_step=idle_step))


def loop_overhead(trainer, state, *, epoch: int, repeats: int, steps: int = 0):
  """Alternately times the loop, the jitted step alone on the same batches, and the loop
  around an idle step.

  Args:
    trainer: from `train.create_trainer` (compiled and, with cache=True, cached already).
    state: the train state to continue from.
    epoch: whose batches are timed.
    repeats: rounds of (loop, step alone, loop around an idle step) timings.
    steps: time only the epoch's first `steps` steps (0: the whole epoch).

  Returns:
    The new state and a report: per-step milliseconds in the loop, alone and of the host's
    own work (medians); the overhead (median of loop / alone - 1); the host's share of the
    step (host / alone), which bounds the overhead from above without the noise of two
    long timings; and each round's seconds.
  """
  config = trainer.config
  cap = config.steps_per_epoch
  if steps:
    config.steps_per_epoch = steps
  try:
    batches = batches_on_device(trainer, epoch)
    state, idle = with_idle_step(trainer, state, batches[0])
    time_epoch(idle, state, epoch)  # Compiles the idle step.
    rounds = []
    for _ in range(repeats):
      state, loop_s = time_epoch(trainer, state, epoch)
      state, alone_s = time_steps(trainer, state, batches)
      _, host_s = time_epoch(idle, state, epoch)
      rounds.append((loop_s, alone_s, host_s))
  finally:
    config.steps_per_epoch = cap
  loop_s, alone_s, host_s = np.array(rounds).T
  step_ms = lambda seconds: 1000 * float(np.median(seconds)) / len(batches)
  return state, {
      'steps': len(batches), 'loop_step_ms': step_ms(loop_s), 'alone_step_ms': step_ms(alone_s),
      'host_step_ms': step_ms(host_s), 'overhead': float(np.median(loop_s / alone_s)) - 1,
      'host_share': float(np.median(host_s / alone_s)), 'rounds_s': rounds}


def main(argv=None) -> dict:
  args = parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    config = make_config(args, args.data_dir or tmp)
    trainer, state = train.create_trainer(config)
    state, warmup_s = warm_up(trainer, state)
    _, overhead = loop_overhead(trainer, state, epoch=1, repeats=args.repeats,
                                steps=args.steps)
  report = {'args': args.flag_values_dict(), 'warmup_s': warmup_s, **overhead}
  print(f"VGG-{args.depth} width {args.width}, batch {args.batch_size}, {overhead['steps']} "
        f"steps: {overhead['loop_step_ms']:.2f} ms a step in the loop, "
        f"{overhead['alone_step_ms']:.2f} ms alone, overhead {100 * overhead['overhead']:.1f}%; "
        f"the host's own work {overhead['host_step_ms']:.2f} ms a step, "
        f"{100 * overhead['host_share']:.2f}% of the step (warm-up {warmup_s:.1f} s)")
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
