r"""How much the training loop adds to its steps: one epoch's wall time / the sum of its steps.

Runs `vgg_flax.train.train_epoch` on the generated Tiny ImageNet sample (after a warm-up
epoch that compiles the step and fills the decoded-image cache), then times the same
epoch's batches step by step, each blocked, with the batches already on the device. The
ratio is what the host loop (input pipeline, transfers, metric merging, hooks) costs on top
of the compiled step. Epochs and step sums alternate to share the machine's noise.

  python benchmarks/epoch_overhead.py --depth=11 --repeats=2 --json=/tmp/overhead.json

This one needs TensorFlow (the input pipeline is tf.data); `throughput.py` does not.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position
from vgg_flax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from vgg_flax import train  # pylint: disable=g-import-not-at-top,wrong-import-position


class NullWriter:
  """A metric writer that drops everything (the cost of TensorBoard is not the question)."""

  def write_scalars(self, step, scalars):
    del step, scalars


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--depth', type=int, default=11)
  parser.add_argument('--width', type=int, default=64)
  parser.add_argument('--hidden_units', type=int, default=4096)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--train_per_class', type=int, default=100)
  parser.add_argument('--log_every_steps', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--data_dir', default='', help="Where the sample goes; '' = a temp dir.")
  parser.add_argument('--json', default='')
  return parser.parse_args(argv)


def make_config(args: argparse.Namespace, data_dir: str):
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


def time_steps(trainer, state, epoch: int):
  """The sum of the epoch's step times, each step blocked, batches on the device first."""
  batch_sharding = sharding.data_sharding(trainer.mesh)
  batches = [sharding.to_global_batch(b, batch_sharding)
             for b in trainer.dataset.train_batches(trainer.config, epoch=epoch)]
  jax.block_until_ready(batches)
  total = 0.0
  for batch in batches:
    start = time.perf_counter()
    state, step_metrics = trainer.compiled.train_step(state, batch)
    jax.block_until_ready((state, step_metrics))
    total += time.perf_counter() - start
  return state, total, len(batches)


def main(argv=None) -> dict:
  args = parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    config = make_config(args, args.data_dir or tmp)
    trainer, state = train.create_trainer(config)
    state, warmup_s = time_epoch(trainer, state, 1)  # Compiles, decodes, caches.
    epochs, sums = [], []
    for _ in range(args.repeats):
      state, seconds = time_epoch(trainer, state, 2)
      epochs.append(seconds)
      state, seconds, num_steps = time_steps(trainer, state, 2)
      sums.append(seconds)
  report = {'args': vars(args), 'steps_per_epoch': num_steps, 'warmup_epoch_s': warmup_s,
            'epoch_s': epochs, 'step_sum_s': sums,
            'ratio': float(np.median(epochs) / np.median(sums))}
  print(f"VGG-{args.depth} width {args.width}, batch {args.batch_size}, {num_steps} steps: "
        f"epoch {np.median(epochs):.2f} s, sum of steps {np.median(sums):.2f} s, "
        f"ratio {report['ratio']:.3f} (warm-up epoch {warmup_s:.1f} s)")
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
