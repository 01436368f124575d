"""tf.data input pipeline: this process's share of a split, decoded, cached, batched.

tf.data does only what needs the host: reading, JPEG decoding and batching. When a split is
cached (`config.cache`), its decoded uint8 images stay in memory after the first epoch;
cached train epochs then gather each batch from a seeded permutation (numpy), which is
several times faster than shuffling tf.data elements one by one. Uncached splits stream from
the TFRecords every epoch (shards in a seeded order, read in parallel, a bounded shuffle
buffer of serialized records, parsed and decoded a batch at a time, prefetch), so memory
does not grow with the dataset. `cache='auto'` (the default)
caches a split only when its decoded images fit `config.cache_max_gib`. Flip, crop, resize
and normalisation run on the device inside the jitted step (`vgg_flax.core.preprocess`), which
is both faster and gives every image its own random crop and flip.

Train batches are shuffled by (seed, epoch), so a resumed run reproduces the order of any
epoch, and drop the remainder. Eval batches keep the stored order (file-name order for
Tiny ImageNet), are padded to full batches and carry a mask, so each example counts once.
With cache on, the order is a numpy permutation; with it off, a seeded shuffle of the shard
order and a seeded shuffle buffer over the encoded records, with deterministic tf.data ops:
the two orders differ, each is a function of (seed, epoch), so resuming is exact either way.
Streaming mixes examples within the buffer only: a dataset stored in class order (as the
`tiny_imagenet` builder stores train, to keep file-name order for evaluation) is mixed less
than by the cache's full permutation.

A run opens its data once (`open_dataset`) and passes the `Dataset` down: it owns the
prepared builder, its info and what is decoded into memory, so the module keeps no state.
TensorFlow is imported on first use (etils' `epy.lazy_imports`), not with this module: it
takes seconds to import, and `main.py` answers a mistake in a workdir, a lock or a weights file
before any data is read. The first use also keeps TensorFlow off the accelerators
(`hide_gpus_from_tf`, the one place that does): every TensorFlow user of the project imports
it through `lazy_tensorflow`, and `prepared_builder` touches it before TFDS can run an op.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from etils import epy

from input_pipeline import image_folder
from input_pipeline import synthetic
from input_pipeline import tiny_imagenet
from input_pipeline.tiny_imagenet import DataError


def hide_gpus_from_tf(_: str = 'tensorflow') -> None:
  """Keeps TensorFlow off the accelerators, which belong to JAX.

  Runs when TensorFlow is first imported (`lazy_tensorflow`'s callback, which passes the
  module's name): TF sets up its devices once, at its first op, so this comes before any.
  """
  import tensorflow  # pylint: disable=g-import-not-at-top  # Already imported: a lookup.
  try:
    tensorflow.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF has already set up its devices; it is too late to change them.


@contextlib.contextmanager
def lazy_tensorflow():
  """`with lazy_tensorflow(): import tensorflow as tf` imports TF at its first attribute.

  The import hides the GPUs from TF (`hide_gpus_from_tf`). Modules that annotate with TF
  types need `from __future__ import annotations`, or the annotation imports it.
  """
  with epy.lazy_imports(success_callback=hide_gpus_from_tf):
    yield


with lazy_tensorflow():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top


# `config.cache` values: keep decoded splits in memory, stream them, or decide by size.
CACHE_CHOICES = (True, False, 'auto')
# `config.cache_max_gib` of workdirs saved before the field existed.
DEFAULT_CACHE_MAX_GIB = 4.0
# Serialized examples in the streaming shuffle buffer: bounded, so memory does not grow with the
# dataset (about 50 MB of Tiny ImageNet's JPEGs).
SHUFFLE_BUFFER = 20_000
# Shards read at once while streaming, one example from each in turn.
INTERLEAVE_CYCLE = 16


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the training loop needs to know about a prepared dataset.

  Attributes:
    num_classes: number of classes.
    class_names: human-readable words per class index.
    label_names: the label feature's names (wnids for Tiny ImageNet) per class index.
    split_sizes: total examples per split, over all processes.
    image_shape: stored image shape, e.g. (64, 64, 3).
  """
  num_classes: int
  class_names: tuple[str, ...]
  label_names: tuple[str, ...]
  split_sizes: dict[str, int]
  image_shape: tuple[int, int, int]


def data_dir(config: ml_collections.ConfigDict) -> str:
  """The TFDS data dir: `config.data_dir`, or the TFDS default."""
  return config.data_dir or tfds.core.constants.get_default_data_dir()


def resolve_data_source(config: ml_collections.ConfigDict) -> str:
  """The source to prepare from.

  Args:
    config: the run's config.

  Returns:
    `config.data_source` as an absolute path; the generated sample's folder when
    `config.sample.enabled` and no source is given (it is written on first use); '' when
    the official zip is to be downloaded, or for datasets other than Tiny ImageNet.
  """
  if config.data_source:
    return str(pathlib.Path(config.data_source).expanduser().resolve())
  if config.dataset != 'tiny_imagenet' or not config.sample.enabled:
    return ''
  return str(generate_sample(config))


def sample_folder(config: ml_collections.ConfigDict) -> pathlib.Path:
  """The folder under the data dir that holds the configured sample (once written)."""
  s = config.sample
  name = (f'tiny_imagenet_sample_c{s.num_classes}_t{s.train_per_class}_'
          f'v{s.val_per_class}_x{s.test_images}_s{s.seed}')
  return pathlib.Path(data_dir(config)) / 'samples' / name


def generate_sample(config: ml_collections.ConfigDict) -> pathlib.Path:
  """Writes the configured sample under the data dir once, and returns its folder."""
  s = config.sample
  folder = sample_folder(config)
  name = folder.name
  if not folder.exists():
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so another process never sees a half-written sample.
    partial = tempfile.mkdtemp(prefix=f'{name}.', dir=folder.parent)
    synthetic.write_sample(partial, num_classes=s.num_classes,
                           train_per_class=s.train_per_class, val_per_class=s.val_per_class,
                           test_images=s.test_images, seed=s.seed)
    try:
      os.rename(partial, folder)
    except OSError:  # Another process was first.
      shutil.rmtree(partial)
  return folder / synthetic.FOLDER


def load_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared builder of `config.dataset` (prepares it on first use; `open_dataset`)."""
  if not config.progress_bar:
    tfds.disable_progress_bar()
  options = image_folder.builder_options(config) if config.dataset == image_folder.NAME else {}
  return prepared_builder(config.dataset, resolve_data_source(config), data_dir(config),
                          config.skip_corrupt, **options)


def local_builder(dataset: str):
  """The module of this project's builder of `dataset` (prepared from `data_source`), or
  None for a TFDS name."""
  return {'tiny_imagenet': tiny_imagenet, image_folder.NAME: image_folder}.get(dataset)


def prepared_builder(dataset: str, source: str, directory: str, skip_corrupt: bool,
                     **options) -> tfds.core.DatasetBuilder:
  """Makes a builder and prepares its data unless a complete copy is already there.

  `options` go to a local builder's `make_builder` (`image_folder.builder_options`).

  With several processes, process 0 prepares first and the others wait for it: on a
  shared file system they then find the data ready; with a disk per host they prepare
  their own copy. Preparing concurrently into one folder would collide.
  """

  tf.constant(0)  # Imports TF, GPUs hidden, before TFDS can import it and run an op.

  def make():
    if (module := local_builder(dataset)) is not None:
      folder = module.prepared_folder(source, directory, **options)
      if (missing := half_prepared(folder)) is not None:
        logging.warning('%s is half prepared (%s); preparing it again.', folder, missing)
        shutil.rmtree(folder)
      return module.make_builder(source, data_dir=directory, skip_corrupt=skip_corrupt,
                                 **options)
    return tfds.builder(dataset, data_dir=directory)

  if jax.process_count() > 1:
    if jax.process_index() == 0:
      make().download_and_prepare()
    multihost_utils.sync_global_devices(f'prepared {dataset} in {directory}')
  builder = make()  # Made after preparing, so it reads the prepared dataset's info.
  builder.download_and_prepare()
  return builder


def half_prepared(folder: pathlib.Path) -> str | None:
  """What a prepared TFDS folder lacks (a damaged or partly deleted copy), None if complete.

  TFDS prepares into a temporary folder and renames it when done, so a run killed while
  preparing leaves only that temporary folder (ignored). A folder that exists but lost its
  `dataset_info.json` or a shard file would fail mid-training; it is prepared again instead.
  """
  if not folder.is_dir():
    return None
  info_path = folder / 'dataset_info.json'
  try:
    info = json.loads(info_path.read_text())
  except (OSError, ValueError) as e:
    return f'{info_path.name} unreadable: {e}'
  file_format = info.get('fileFormat', 'tfrecord')
  for split in info.get('splits', []):
    shards = len(split.get('shardLengths', []))
    template = split.get('filepathTemplate', '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}')
    for index in range(shards):
      name = (template.replace('{DATASET}', info['name']).replace('{SPLIT}', split['name'])
              .replace('{FILEFORMAT}', file_format)
              .replace('{SHARD_X_OF_Y}', f'{index:05d}-of-{shards:05d}'))
      if not (folder / name).is_file():
        return f'{name} missing'
  return None


def describe(builder: tfds.core.DatasetBuilder) -> DatasetInfo:
  """A prepared builder's classes, split sizes and image shape."""
  info = builder.info
  label_names = tuple(info.features['label'].names)
  metadata = info.metadata or {}
  return DatasetInfo(
      num_classes=info.features['label'].num_classes,
      class_names=tuple(metadata.get('class_names', label_names)),
      label_names=label_names,
      split_sizes={name: split.num_examples for name, split in info.splits.items()},
      image_shape=tuple(info.features['image'].shape))


def open_dataset(config: ml_collections.ConfigDict) -> 'Dataset':
  """Prepares the dataset if needed and opens it for one run (see `Dataset`).

  Args:
    config: the run's config (`dataset`, `data_source`, `data_dir`, `skip_corrupt`,
      `sample`, `progress_bar`).

  Returns:
    The dataset, to create once and pass to whatever reads batches.
  """
  return Dataset(load_builder(config))


def get_dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """Prepares the dataset if needed and describes it (`open_dataset(config).info`).

  For callers that need only the classes and split sizes; whoever reads batches keeps the
  `Dataset` of `open_dataset` instead, so that its decoded splits are reused.

  Args:
    config: the run's config (`dataset`, `data_source`, `data_dir`, `sample`, ...).

  Returns:
    The dataset's classes, split sizes and image shape.
  """
  return open_dataset(config).info


def split_size(info: DatasetInfo, split: str) -> int:
  """Examples in a split; an unknown split name is a DataError listing the known ones."""
  if split not in info.split_sizes:
    raise DataError(f'split {split!r} does not exist; available splits: '
                    f'{", ".join(info.split_sizes)} (see config.train_split, eval_split, '
                    'predict_split).')
  return info.split_sizes[split]


def local_batch_size(global_batch_size: int, field: str) -> int:
  """This process's part of a global batch."""
  count = jax.process_count()
  if global_batch_size % count:
    raise DataError(f'config.{field}={global_batch_size} does not divide among '
                     f'{count} processes; use a multiple of {count}.')
  return global_batch_size // count


def train_steps_per_epoch(config: ml_collections.ConfigDict, info: DatasetInfo) -> int:
  """Full global batches per epoch, the same for every process.

  Args:
    config: uses `train_split`, `batch_size` and `steps_per_epoch` (a cap when > 0).
    info: from `get_dataset_info`.

  Returns:
    The number of train steps in one epoch.
  """
  total = split_size(info, config.train_split)
  # The smallest process share decides, so that all processes step together.
  steps = total // jax.process_count() // local_batch_size(config.batch_size, 'batch_size')
  if steps == 0:
    raise DataError(f'config.batch_size={config.batch_size} is larger than split '
                     f'{config.train_split!r} ({total} examples); use a smaller batch_size.')
  if config.steps_per_epoch > 0:
    steps = min(steps, config.steps_per_epoch)
  return steps


def num_eval_batches(config: ml_collections.ConfigDict, info: DatasetInfo, split: str) -> int:
  """Eval batches of a split, the same for every process (the largest share decides)."""
  largest_share = math.ceil(split_size(info, split) / jax.process_count())
  return math.ceil(largest_share / local_batch_size(config.eval_batch_size, 'eval_batch_size'))


def process_share(total: int) -> int:
  """Examples of a split that this process reads (as `tfds.split_for_jax_process`)."""
  count, index = jax.process_count(), jax.process_index()
  return total // count + (index < total % count)


def epoch_seed(seed: int, epoch: int) -> int:
  """A shuffle seed of its own for each (seed, epoch)."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
  """This process's share of a split, images still encoded, in stored order."""
  return builder.as_dataset(
      split=tfds.split_for_jax_process(split), shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()},
      # Caching is this module's decision (config.cache), after decoding.
      read_config=tfds.ReadConfig(try_autocache=False))


def decode_fn(builder: tfds.core.DatasetBuilder):
  """Maps an encoded example to {'image': uint8, 'label': int32, 'file_name': string}."""
  features = builder.info.features
  image_feature = features['image']

  def decode(example):
    return {
        'image': image_feature.decode_example(example['image']),
        'label': tf.cast(example['label'], tf.int32) if 'label' in features else tf.constant(-1),
        'file_name': example['file_name'] if 'file_name' in features else tf.constant(''),
    }

  return decode


def decoded_bytes(info: DatasetInfo, split: str) -> int:
  """Bytes of this process's share of a split, decoded to uint8 at stored size."""
  return process_share(split_size(info, split)) * math.prod(info.image_shape)


def use_cache(config: ml_collections.ConfigDict, info: DatasetInfo, split: str) -> bool:
  """Whether to keep a split's decoded images in memory (`config.cache`).

  Args:
    config: uses `cache` (True, False or 'auto') and `cache_max_gib`.
    info: from `get_dataset_info`.
    split: the split to read.

  Returns:
    `config.cache` when it is True or False; with 'auto', whether this process's decoded
    share of the split fits `config.cache_max_gib` (`Dataset.use_cache` logs the choice).
  """
  if config.cache is True or config.cache is False:
    return config.cache
  return decoded_bytes(info, split) <= cache_budget(config) * 2**30


def cache_budget(config: ml_collections.ConfigDict) -> float:
  """`config.cache_max_gib`, or its default for configs saved before the field existed."""
  return config.get('cache_max_gib', DEFAULT_CACHE_MAX_GIB)


def share_key(split: str) -> tuple[str, int, int]:
  """Names this process's share of a split: what a decoded cache holds."""
  return split, jax.process_index(), jax.process_count()


class Dataset:
  """A prepared dataset, opened once per run (`open_dataset`) and passed to its readers.

  It owns everything that outlives one epoch, so that what the first epoch decodes serves
  the later ones and nothing is kept in module globals: the prepared builder, its `info`,
  the decoded splits of this process (numpy arrays for cached train epochs, tf.data datasets
  with an in-memory cache for evaluation) and the `cache='auto'` choices already logged.
  Two Datasets share nothing; dropping one frees its decoded splits.

  The config passed to each method supplies what may change between calls (batch sizes,
  seed, cache, splits); the data itself is the one the Dataset was opened on.

  Attributes:
    builder: the prepared TFDS builder.
    info: its classes, split sizes and image shape.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder):
    self.builder = builder
    self.info = describe(builder)
    # By `share_key`: eval splits cached by tf.data, train splits as numpy arrays.
    self._decoded: dict[tuple, tf.data.Dataset] = {}
    self._arrays: dict[tuple, dict[str, np.ndarray]] = {}
    # By (split, decoded bytes, budget), so each choice is logged once.
    self._logged_choices: set[tuple] = set()

  def use_cache(self, config: ml_collections.ConfigDict, split: str) -> bool:
    """`use_cache` for this dataset; a `cache='auto'` choice is logged once per Dataset."""
    fits = use_cache(config, self.info, split)
    if config.cache == 'auto':
      choice = (split, decoded_bytes(self.info, split), cache_budget(config))
      if choice not in self._logged_choices:
        self._logged_choices.add(choice)
        logging.info("cache='auto': split %r decodes to %.2f GiB, %s cache_max_gib=%g: %s.",
                     split, choice[1] / 2**30, 'within' if fits else 'over', choice[2],
                     'caching it in memory' if fits else 'streaming it from the TFRecords')
    return fits

  def decoded_split(self, split: str, cache: bool) -> tf.data.Dataset:
    """This process's share of a split, decoded; with `cache`, decoded once per Dataset."""
    if not cache:
      return read_split(self.builder, split).map(decode_fn(self.builder),
                                                 num_parallel_calls=tf.data.AUTOTUNE)
    key = share_key(split)
    if key not in self._decoded:
      self._decoded[key] = read_split(self.builder, split).map(
          decode_fn(self.builder), num_parallel_calls=tf.data.AUTOTUNE).cache()
    return self._decoded[key]

  def cached_arrays(self, split: str) -> dict[str, np.ndarray]:
    """This process's share of a split, decoded into memory once per Dataset.

    Cached epochs index these arrays with a permutation instead of shuffling tf.data
    elements one by one: the per-element work of tf.data is what limits a cached epoch.
    """
    key = share_key(split)
    if key not in self._arrays:
      self._arrays[key] = decode_to_arrays(self.builder, split)
    return self._arrays[key]

  def train_batches(self, config: ml_collections.ConfigDict, *,
                    epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """This process's train batches of one epoch.

    Args:
      config: uses `train_split`, `batch_size`, `seed`, `cache`, `cache_max_gib`,
        `steps_per_epoch`.
      epoch: the epoch; with `config.seed` it fixes the order.

    Yields:
      Exactly `train_steps_per_epoch` batches of `batch_size // process_count` examples:
      {'image': uint8 (b, H, W, 3) at stored size, 'label': int32 (b,)}.
    """
    steps = train_steps_per_epoch(config, self.info)
    batch_size = local_batch_size(config.batch_size, 'batch_size')
    if self.use_cache(config, config.train_split):
      arrays = self.cached_arrays(config.train_split)
      order = np.random.default_rng([config.seed, epoch]).permutation(len(arrays['label']))
      for step in range(steps):
        indices = order[step * batch_size:(step + 1) * batch_size]
        yield {'image': arrays['image'][indices], 'label': arrays['label'][indices]}
      return
    yield from streamed_batches(self.builder, config.train_split, epoch_seed(config.seed, epoch),
                                batch_size, steps)

  def eval_batches(self, config: ml_collections.ConfigDict,
                   split: str) -> Iterator[dict[str, np.ndarray]]:
    """This process's eval batches of a split, in stored order, padded to full batches.

    Args:
      config: uses `eval_batch_size`, `cache` and `cache_max_gib`.
      split: the split to read, e.g. `config.eval_split`.

    Yields:
      `num_eval_batches` batches of `eval_batch_size // process_count` examples:
      {'image': uint8, 'label': int32 (-1 unlabelled or padding), 'mask': bool (False on
      padding), 'file_name': object array of str ('' on padding)}.
    """
    num_batches = num_eval_batches(config, self.info, split)
    batch_size = local_batch_size(config.eval_batch_size, 'eval_batch_size')
    ds = self.decoded_split(split, cache=self.use_cache(config, split))
    ds = ds.map(lambda ex: {**ex, 'mask': True})
    padding = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype),
                                    ds.element_spec)
    padding['label'] = tf.constant(-1)
    share = process_share(self.info.split_sizes[split])
    ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(
        num_batches * batch_size - share))
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    for batch in ds.as_numpy_iterator():
      batch['file_name'] = np.array([f.decode() for f in batch['file_name']], dtype=object)
      yield batch


def decode_to_arrays(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
  """This process's share of a split, decoded into numpy arrays (what a cache keeps)."""
  share = process_share(builder.info.splits[split].num_examples)
  shape = builder.info.features['image'].shape
  arrays = {'image': np.empty((share, *shape), np.uint8), 'label': np.empty(share, np.int32)}
  ds = read_split(builder, split).map(decode_fn(builder), num_parallel_calls=tf.data.AUTOTUNE)
  start = 0
  for chunk in ds.batch(1024).prefetch(2).as_numpy_iterator():
    end = start + len(chunk['label'])
    arrays['image'][start:end], arrays['label'][start:end] = chunk['image'], chunk['label']
    start = end
  return arrays


def streamed_split(builder: tfds.core.DatasetBuilder, split: str, seed: int) -> tf.data.Dataset:
  """This process's share of a split as serialized records, in an order fixed by `seed`.

  The TFRecord shards (this process's part of each, as TFDS assigns it) are shuffled with
  `seed` and read `INTERLEAVE_CYCLE` at a time, in parallel, one record from each in turn; a
  buffer of `SHUFFLE_BUFFER` records, seeded too, mixes them further. Every op is
  deterministic, so the same seed gives the same order. Records stay serialized until they
  are batched (`parse_batch`): tf.data's work per element, not the JPEG decoding, is what
  limits streaming (`python benchmarks/input_pipeline.py --stages`).

  Raises:
    DataError: the dataset is stored in another format than TFRecord.
  """
  if builder.info.file_format not in (None, tfds.core.FileFormat.TFRECORD):
    raise DataError(f'{builder.name} is stored as {builder.info.file_format.value}; '
                    'streaming (config.cache=False) reads TFRecord datasets only: use '
                    'config.cache=True.')
  instructions = builder.info.splits[tfds.split_for_jax_process(split)].file_instructions
  files = [os.path.join(builder.data_path, os.path.basename(i.filename)) for i in instructions]
  skips = np.array([i.skip for i in instructions], np.int64)
  takes = np.array([i.take for i in instructions], np.int64)
  shards = tf.data.Dataset.from_tensor_slices((files, skips, takes))
  shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
  ds = shards.interleave(
      lambda path, skip, take: tf.data.TFRecordDataset(path).skip(skip).take(take),
      cycle_length=INTERLEAVE_CYCLE, block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True)
  return ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)


def parse_batch(builder: tfds.core.DatasetBuilder):
  """Maps a batch of serialized examples to {'image': uint8 (b, H, W, C), 'label': int32}.

  One op parses the whole batch and one decodes its images, instead of one of each per
  example. TFDS stores an image feature as its encoded bytes and a class label as int64.
  """
  image = builder.info.features['image']
  spec = {'image': tf.io.FixedLenFeature([], tf.string),
          'label': tf.io.FixedLenFeature([], tf.int64)}

  def parse(serialized):
    examples = tf.io.parse_example(serialized, spec)
    return {'image': tf.map_fn(image.decode_example, examples['image'],
                               fn_output_signature=tf.uint8),
            'label': tf.cast(examples['label'], tf.int32)}

  return parse


def streamed_batches(builder: tfds.core.DatasetBuilder, split: str, seed: int,
                     batch_size: int, steps: int) -> Iterator[dict[str, np.ndarray]]:
  """`steps` train batches streamed from the TFRecords: shuffled serialized, then parsed."""
  ds = streamed_split(builder, split, seed).batch(batch_size, drop_remainder=True).take(steps)
  ds = ds.map(parse_batch(builder), num_parallel_calls=tf.data.AUTOTUNE)
  yield from ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
