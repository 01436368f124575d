"""Input pipeline throughput: tf.data decode/cache/shuffle/batch plus on-device flip + crop.

Generates (or reuses) a sample of 100 classes x 200 train images (20,000 JPEGs) under
`--data_dir`, prepares it with the TFDS builder, then times whole train epochs: the first
decodes the JPEGs (and fills the cache), the later ones read the cache; with
`--cache=false` every epoch streams from the TFRecords and decodes again. Each batch goes
through the jitted `preprocess` (a different random flip and crop for each image) and is
blocked on, so the figures are images a second that reach the model.

  python -m benchmarks.input_pipeline --data_dir /tmp/vgg_flax_bench [--cache=false]

`--stages` instead splits a streamed epoch's host work (no augmentation) by alternating, in
one process: reading (the shards and the shuffle buffer, records left serialized), JPEG
decoding alone (encoded images already in memory), one tf.data op per example and one per
batch, and the whole streamed pipeline. It prints CPU microseconds per image (all threads
of the process), which a loaded machine disturbs less than img/s, and how many cores the
process kept busy.

`benchmarks.full_size` measures the same at Tiny ImageNet's full size, with memory.
"""

import functools
import os
import statistics
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config
from configs import default  # pylint: disable=g-import-not-at-top
from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
from vgg_flax.core.preprocess import preprocess  # pylint: disable=g-import-not-at-top


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string('data_dir', '/tmp/vgg_flax_bench', '', flag_values=values)
  flags.DEFINE_integer('num_classes', 100, '', flag_values=values)
  flags.DEFINE_integer('train_per_class', 200, '', flag_values=values)
  flags.DEFINE_integer('batch_size', 64, '', flag_values=values)
  flags.DEFINE_integer('crop_padding', 4, '', flag_values=values)
  flags.DEFINE_integer('epochs', 3, '', flag_values=values)
  flags.DEFINE_enum(
      'cache', 'true', ['true', 'false', 'auto'],
      'config.cache: keep decoded images in memory, stream, or decide.', flag_values=values)
  flags.DEFINE_bool(
      'stages', False, 'CPU time per image of reading, decoding and the streamed pipeline.',
      flag_values=values)
  return bench_config.parse_flags(values, argv)


def make_config(args):
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


def stage_pipelines(config, dataset) -> dict:
  """Each stage of a streamed epoch as a function of the epoch, yielding batches."""
  builder, split, batch_size = dataset.builder, config.train_split, config.batch_size
  steps = pipeline.train_steps_per_epoch(config, dataset.info)
  image = builder.info.features['image']
  encoded = pipeline.read_split(builder, split).map(lambda ex: ex['image']).cache()
  for _ in encoded.batch(1024):  # Read into memory before timing.
    pass

  def read(epoch):
    ds = pipeline.streamed_split(builder, split, pipeline.epoch_seed(config.seed, epoch))
    return ds.batch(batch_size, drop_remainder=True).map(tf.strings.length)

  def decode_each(epoch):
    del epoch  # Stored order: decoding costs the same in any order.
    return encoded.map(image.decode_example, num_parallel_calls=tf.data.AUTOTUNE).batch(
        batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  def decode_batches(epoch):
    del epoch
    decode = lambda images: tf.map_fn(image.decode_example, images, fn_output_signature=tf.uint8)
    return encoded.batch(batch_size, drop_remainder=True).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  def streamed(epoch):
    return pipeline.streamed_batches(builder, split, pipeline.epoch_seed(config.seed, epoch),
                                     batch_size, steps)

  return {'read (shards + shuffle buffer, serialized)': lambda e: read(e).as_numpy_iterator(),
          'decode JPEGs one op per example': lambda e: decode_each(e).as_numpy_iterator(),
          'decode JPEGs one op per batch': lambda e: decode_batches(e).as_numpy_iterator(),
          'streamed (all of it, parsed and decoded per batch)': streamed}


def time_stages(config, dataset, epochs: int) -> None:
  """CPU microseconds per image and busy cores of each stage, stages alternating."""
  stages = stage_pipelines(config, dataset)
  results = {name: [] for name in stages}
  for epoch in range(epochs):
    order = list(stages) if epoch % 2 == 0 else list(reversed(stages))
    for name in order:
      cpu, wall, images = time.process_time(), time.perf_counter(), 0
      for batch in stages[name](epoch):
        images += len(batch['label'] if isinstance(batch, dict) else batch)
      cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
      results[name].append((cpu / images * 1e6, cpu / wall))
  for name, runs in results.items():
    print(f'{name}: {statistics.median(r[0] for r in runs):.0f} CPU us/image, '
          f'{statistics.median(r[1] for r in runs):.2f} cores busy (median of {epochs})')
  print(f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')


def main():
  args = parse_args()
  config = make_config(args)
  start = time.perf_counter()
  dataset = pipeline.open_dataset(config)
  info = dataset.info
  print(f'sample + prepare: {time.perf_counter() - start:.1f} s '
        f'({info.split_sizes["train"]} train images)')
  if args.stages:
    time_stages(config, dataset, args.epochs)
    return
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
