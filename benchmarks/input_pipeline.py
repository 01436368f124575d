"""Input pipeline throughput: tf.data decode/cache/shuffle/batch plus on-device flip + crop.

Generates (or reuses) a sample of 100 classes x 200 train images (20,000 JPEGs) under
`--data_dir`, prepares it with the TFDS builder, then times whole train epochs: the first
decodes the JPEGs (and fills the cache), the later ones read the cache; with
`--cache=false` every epoch streams from the TFRecords and decodes again. Each batch goes
through the jitted `preprocess` (a different random flip and crop for each image) and is
blocked on, so the figures are images a second that reach the model.

  python benchmarks/input_pipeline.py --data_dir /tmp/vgg_flax_bench [--cache=false]

`benchmarks/full_size.py` measures the same at Tiny ImageNet's full size, with memory.
"""

import argparse
import functools
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from configs import default  # pylint: disable=g-import-not-at-top
from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
from vgg_flax.preprocess import preprocess  # pylint: disable=g-import-not-at-top


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='/tmp/vgg_flax_bench')
  parser.add_argument('--num_classes', type=int, default=100)
  parser.add_argument('--train_per_class', type=int, default=200)
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--crop_padding', type=int, default=4)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--cache', default='true', choices=('true', 'false', 'auto'),
                      help='config.cache: keep decoded images in memory, stream, or decide.')
  return parser.parse_args()


def bench_config(args):
  config = default.get_config()
  config.data_dir = args.data_dir
  config.sample.enabled = True
  config.sample.update(num_classes=args.num_classes, train_per_class=args.train_per_class,
                       val_per_class=10, test_images=10)
  config.batch_size = args.batch_size
  config.progress_bar = False
  config.augment.crop_padding = args.crop_padding
  config.cache = {'true': True, 'false': False, 'auto': 'auto'}[args.cache]
  return config


def timed_epoch(config, dataset, epoch, augment) -> float:
  """Images a second of one epoch, host pipeline plus on-device augmentation."""
  rng = jax.random.key(epoch)
  start, count = time.perf_counter(), 0
  for step, batch in enumerate(dataset.train_batches(config, epoch=epoch)):
    augment(jnp.asarray(batch['image']), rng=jax.random.fold_in(rng, step)).block_until_ready()
    count += len(batch['image'])
  return count / (time.perf_counter() - start)


def main():
  args = parse_args()
  config = bench_config(args)
  start = time.perf_counter()
  dataset = pipeline.open_dataset(config)
  info = dataset.info
  print(f'sample + prepare: {time.perf_counter() - start:.1f} s '
        f'({info.split_sizes["train"]} train images)')
  augment = jax.jit(functools.partial(
      preprocess, image_size=info.image_shape[0], flip=config.augment.flip,
      crop_padding=config.augment.crop_padding))
  # Compile before timing.
  augment(jnp.zeros((args.batch_size,) + info.image_shape, jnp.uint8),
          rng=jax.random.key(0)).block_until_ready()
  for epoch in range(args.epochs):
    cached = dataset.use_cache(config, config.train_split)
    kind = 'streamed' if not cached else 'first (decoding)' if epoch == 0 else 'cached'
    rate = timed_epoch(config, dataset, epoch, augment)
    print(f'epoch {epoch} {kind}: {rate:,.0f} img/s (batch {args.batch_size}, flip + crop '
          f'{config.augment.crop_padding} on {jax.devices()[0].platform})')


if __name__ == '__main__':
  main()
