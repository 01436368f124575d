"""TensorBoard as people read it: train beside validation, image grids, runs that compare.

A workdir's event files, one TensorBoard run per folder:

  <workdir>/        the hparams (the config) and the metrics the HPARAMS table ranks runs by
  <workdir>/train/  loss, accuracy, top5_accuracy (one value an epoch, x = epoch);
                    per_step/: loss, accuracy, top5_accuracy, learning_rate, steps_per_sec
                    (x = training step); housekeeping/: epoch_seconds, uptime;
                    image train_sample
  <workdir>/val/    loss, accuracy, top5_accuracy (x = epoch); best/: loss, accuracy,
                    top5_accuracy and epoch of the best epoch so far (lowest validation
                    loss, the `best/` checkpoint); images val_sample and, at each new best
                    epoch, best_predictions

Train and val carry the same tags, so TensorBoard draws them on one chart per metric, and
`tensorboard --logdir runs` overlays every model's curves (runs `<workdir name>/train`,
`<workdir name>/val`). Epoch charts count epochs, not steps, so runs with different batch
sizes line up.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
# The hparams plugin's own proto: the only way to mark columns `differs` (design.md).
from tensorboard.plugins.hparams import plugin_data_pb2

from input_pipeline import pipeline
from vgg_flax import plots
from vgg_flax.core import preprocess
from vgg_flax.core import sharding
from vgg_flax.core import steps
from vgg_flax.workdir import atomic
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

# Imported at first use, with the GPUs hidden from TF: clu's writers and TensorBoard's hparams
# API import TensorFlow.
with pipeline.lazy_tensorflow():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api as hparams_api  # pylint: disable=g-import-not-at-top

EPOCH_METRICS = ('loss', 'accuracy', 'top5_accuracy')
# The HPARAMS table's metric columns: tag in the `val` run -> column title.
BEST_METRICS = {'best/accuracy': 'best val top-1', 'best/top5_accuracy': 'best val top-5',
                'best/loss': 'best val loss', 'best/epoch': 'best epoch'}
# Config fields that tell models apart: the HPARAMS table shows these columns first.
KEY_HPARAMS = ('model.depth', 'model.conv1x1', 'model.width', 'optimizer', 'learning_rate',
               'batch_size')
SAMPLE_IMAGES = 16  # Images in each sample grid and in the best-epoch predictions.
# Okabe-Ito blue and vermillion: told apart by colour-blind readers too.
CORRECT_COLOR = '#0072B2'
WRONG_COLOR = '#D55E00'
# ReportProgress's scalars, moved into this layout's sections.
_PROGRESS_TAGS = {'steps_per_sec': 'per_step/steps_per_sec', 'uptime': 'housekeeping/uptime'}
# Tags whose x axis is the training step; every other tag's x is the epoch. `train/` and
# `epoch/` are the tags of the layout before the train and val runs (x = step there).
STEP_TAG_PREFIXES = ('per_step/', 'housekeeping/uptime', 'train/', 'epoch/')


class _Renamed:
  """Writes scalars to `writer` under the tags that `rename` gives.

  clu's `MetricWriter` interface by delegation: a subclass of clu's writers would import
  TensorFlow with this module.
  """

  def __init__(self, writer, rename: Callable[[str], str]):
    self._writer = writer
    self._rename = rename

  def write_scalars(self, step: int, scalars) -> None:
    self._writer.write_scalars(step, {self._rename(k): v for k, v in scalars.items()})

  def __getattr__(self, name: str):
    return getattr(self._writer, name)

  def close(self) -> None:
    pass  # The wrapped writer belongs to `Writers`.


@dataclasses.dataclass
class Writers:
  """The run's metric writers: TensorBoard on process 0, logging only on the others.

  Attributes:
    root: the workdir itself: hparams.
    train: `<workdir>/train`.
    val: `<workdir>/val`.
  """
  root: Any
  train: Any
  val: Any

  def flush(self) -> None:
    for writer in (self.root, self.train, self.val):
      writer.flush()

  def close(self) -> None:
    for writer in (self.root, self.train, self.val):
      writer.close()


def create_writers(workdir: str | pathlib.Path) -> Writers:
  """The three writers of a workdir (synchronous: an epoch's summaries are on disk after it)."""

  def create(collection):
    return metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=False,
        collection=collection)

  return Writers(root=create(None), train=create('train'), val=create('val'))


def hparams(config: ml_collections.ConfigDict) -> dict:
  """The config flattened to `a.b: scalar` pairs for TensorBoard's hparams."""
  flat = run_config.flatten_dict(run_config.config_to_dict(config))
  return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


def trial_name(workdir: str | pathlib.Path) -> str:
  """The HPARAMS table's name for a run: the workdir's last two path parts ('runs/vgg16')."""
  return '/'.join(pathlib.Path(workdir).resolve().parts[-2:])


def _write_summary_pb(writer, summary) -> None:
  """Writes a ready-made `Summary` proto's value (as TensorBoard's plugins build them)."""
  value = summary.value[0]
  writer.write_summaries(0, {value.tag: tf.make_ndarray(value.tensor)},
                         metadata={value.tag: value.metadata})


def write_hparams(writer, config: ml_collections.ConfigDict,
                  workdir: str | pathlib.Path) -> None:
  """The run's hparams, and the experiment that declares the HPARAMS table's columns.

  The hparams go under the trial name `trial_name(workdir)` (clu's `write_hparams` would
  name the trial by a hash). clu records no experiment either, so TensorBoard would make
  a metric column of every scalar tag: the experiment summary declares the hparams (no
  domains: TensorBoard shows each run's value) and the `BEST_METRICS` of the `val` run.
  TensorBoard lists hparams marked `differs` first and shows the first few: `KEY_HPARAMS`
  are marked.
  """
  values = hparams(config)
  _write_summary_pb(writer, hparams_api.hparams_pb(values, trial_id=trial_name(workdir)))
  summary = hparams_api.hparams_config_pb(
      hparams=[hparams_api.HParam(name) for name in sorted(values)],
      metrics=[hparams_api.Metric(tag, group='val', display_name=title)
               for tag, title in BEST_METRICS.items()])
  value = summary.value[0]
  plugin_data = plugin_data_pb2.HParamsPluginData.FromString(
      value.metadata.plugin_data.content)
  for info in plugin_data.experiment.hparam_infos:
    info.differs = info.name in KEY_HPARAMS
  value.metadata.plugin_data.content = plugin_data.SerializeToString()
  _write_summary_pb(writer, summary)


def best_row(history: list[dict], best_epoch: int) -> dict | None:
  """The history row of `best_epoch` (None before any epoch)."""
  return next((row for row in history if row['epoch'] == best_epoch), None)


def write_epoch(writers: Writers, row: dict, best: dict | None) -> None:
  """One epoch's scalars at x = epoch: train and val under the same tags, and the best."""
  epoch = row['epoch']
  train = {metric: row[f'train_{metric}'] for metric in EPOCH_METRICS}
  train['housekeeping/epoch_seconds'] = row['seconds']
  writers.train.write_scalars(epoch, train)
  val = {metric: row[f'val_{metric}'] for metric in EPOCH_METRICS}
  if best is not None:
    val.update({f'best/{metric}': best[f'val_{metric}'] for metric in EPOCH_METRICS})
    val['best/epoch'] = best['epoch']
  writers.val.write_scalars(epoch, val)


def as_model_sees(images: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 images resized as the model's input is (before augmentation), for display."""
  x = np.asarray(preprocess.preprocess(images, image_size=image_size))
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def read_first_examples(dataset, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `count` examples of a split in stored order, the same in every process.

  Raises:
    DataError: the split does not exist or is empty.
  """
  if pipeline.split_size(dataset.info, split) == 0:
    raise pipeline.DataError(f'split {split!r} is empty: nothing to evaluate.')
  builder = dataset.builder
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(try_autocache=False))
  ds = ds.take(count).map(pipeline.decode_fn(builder)).batch(count)
  batch = next(ds.as_numpy_iterator())
  return batch['image'], batch['label']


def first_train_batch(config: ml_collections.ConfigDict, dataset,
                      count: int) -> tuple[np.ndarray, np.ndarray]:
  """Up to `count` images of the first batch that training takes (epoch 1's order)."""
  batch = next(iter(dataset.train_batches(config, epoch=1)))
  return batch['image'][:count], batch['label'][:count]


def class_words(info, labels: np.ndarray) -> list[str]:
  """Each label's class name, its first synonym ('goldfish, Carassius auratus' -> 'goldfish')."""
  return [plots.short_words(info.class_names[int(label)]) for label in labels]


def prediction_titles(info, predictions: np.ndarray,
                      labels: np.ndarray) -> tuple[list[str], list[str]]:
  """Titles 'predicted / true: label' and their colours (correct or wrong)."""
  titles = [f'{predicted}\ntrue: {true}' for predicted, true in
            zip(class_words(info, predictions), class_words(info, labels))]
  colors = [CORRECT_COLOR if p == t else WRONG_COLOR for p, t in zip(predictions, labels)]
  return titles, colors


def sample_paths(workdir: str | pathlib.Path) -> dict[str, pathlib.Path]:
  """Where the data-sample figures go, by TensorBoard tag."""
  folder = pathlib.Path(workdir) / files.PLOTS_DIR
  return {'train_sample': folder / 'train_sample.png', 'val_sample': folder / 'val_sample.png'}


def write_data_samples(writers: Writers, workdir: str | pathlib.Path, config, dataset,
                       val_images: np.ndarray, val_labels: np.ndarray) -> None:
  """`plots/train_sample.png` and `val_sample.png`, and the same grids in TensorBoard.

  Process 0 writes them once per workdir (again only if a PNG is missing). Each image is
  titled with its class words and shown as the model takes it, before augmentation.
  """
  paths = sample_paths(workdir)
  if jax.process_index() or all(path.exists() for path in paths.values()):
    return
  info = dataset.info
  train_images, train_labels = first_train_batch(config, dataset, SAMPLE_IMAGES)
  grids = {'train_sample': (train_images, train_labels), 'val_sample': (val_images, val_labels)}
  for tag, (images, labels) in grids.items():
    pixels = plots.draw_image_grid(as_model_sees(images, config.image_size),
                                       class_words(info, labels))
    plots.write_png(paths[tag], pixels)
    writer = writers.train if tag == 'train_sample' else writers.val
    writer.write_images(0, {tag: pixels[None]})


class BestPredictions:
  """A few fixed validation images, classified by the model at each new best epoch.

  Every process reads the same images and takes part in the (replicated) forward pass;
  process 0 alone draws the grid.
  """

  def __init__(self, trainer, images: np.ndarray, labels: np.ndarray):
    self._trainer = trainer
    self._labels = labels
    self._display = as_model_sees(images, trainer.config.image_size)
    replicated = sharding.replicated(trainer.mesh)
    self._images = jax.make_array_from_process_local_data(replicated, images)
    config = trainer.config

    def classify(state, images):
      logits = steps.infer_logits(state.apply_fn, steps.model_variables(state), images,
                                  image_size=config.image_size, dtype=jnp.dtype(config.dtype))
      return jnp.argmax(logits, axis=-1)

    self._classify = jax.jit(classify, out_shardings=replicated)

  def write(self, writer, state, epoch: int) -> None:
    """Writes the `best_predictions` grid at x = epoch."""
    predictions = np.asarray(self._classify(state, self._images))
    if jax.process_index():
      return
    titles, colors = prediction_titles(self._trainer.info, predictions, self._labels)
    pixels = plots.draw_image_grid(self._display, titles, colors)
    writer.write_images(epoch, {'best_predictions': pixels[None]})


def has_layout(workdir: str | pathlib.Path) -> bool:
  """Whether the workdir already holds this layout's runs (asked before the writers exist)."""
  return (pathlib.Path(workdir) / 'train').is_dir()


class RunSummaries:
  """Everything a training run writes to TensorBoard; made by `open_run`."""

  def __init__(self, writers: Writers, best_predictions: BestPredictions):
    self.writers = writers
    self.best_predictions = best_predictions
    # For `train_epoch` (the training scalars every `log_every_steps`) and ReportProgress.
    self.per_step = _Renamed(writers.train, lambda tag: f'per_step/{tag}')
    self.progress = _Renamed(writers.train, lambda tag: _PROGRESS_TAGS.get(tag, tag))

  def write_epoch(self, loop, state, improved: bool) -> None:
    """The last epoch of `loop.history`; at a new best epoch also its predictions grid.

    Every process calls it (the predictions take all devices).
    """
    row = loop.history[-1]
    write_epoch(self.writers, row, best_row(loop.history, loop.early_stopping.best_epoch))
    if improved:
      self.best_predictions.write(self.writers.val, state, row['epoch'])
    self.writers.flush()

  def close(self) -> None:
    self.writers.close()


def open_run(workdir: str | pathlib.Path, trainer, loop) -> RunSummaries:
  """Creates the writers and writes what comes before the next epoch.

  A workdir without the `train/` run is new, or was written before this layout: it gets
  the hparams, and its finished epochs (`loop.history`) go into the train and val runs.
  The data-sample grids are written once per workdir.

  Args:
    workdir: the run's workdir.
    trainer: the run's `loop.Trainer` (config, dataset info, model, mesh).
    loop: the run's `loop.LoopState` (restored or fresh).

  Returns:
    The run's summaries, to close at the end.
  """
  config = trainer.config
  new_layout = not has_layout(workdir)
  writers = create_writers(workdir)
  if new_layout:
    write_hparams(writers.root, config, workdir)
    best = best_row(loop.history, loop.early_stopping.best_epoch)
    for row in loop.history:
      write_epoch(writers, row, best if row is loop.history[-1] else None)
  val_images, val_labels = read_first_examples(trainer.dataset, config.eval_split,
                                               SAMPLE_IMAGES)
  write_data_samples(writers, workdir, config, trainer.dataset, val_images, val_labels)
  writers.flush()
  return RunSummaries(writers, BestPredictions(trainer, val_images, val_labels))


def _event_is_after(event: tf.compat.v1.Event, step: int, epoch: int) -> bool:
  """Whether an event lies past (step, epoch): x is the step or the epoch by its tag."""
  tags = [value.tag for value in event.summary.value]
  if not tags:
    return False  # File version and other bookkeeping records.
  limit = step if tags[0].startswith(STEP_TAG_PREFIXES) else epoch
  return event.step > limit


def _drop_file_events_after(path: pathlib.Path, step: int, epoch: int) -> None:
  """Rewrites one event file without its events past (step, epoch) and a torn last record."""
  kept, dropped = [], 0
  for record in _event_records(path):
    if _event_is_after(tf.compat.v1.Event.FromString(record), step, epoch):
      dropped += 1
    else:
      kept.append(record)
  if not dropped:
    return

  def write(tmp: pathlib.Path) -> None:
    with tf.io.TFRecordWriter(str(tmp)) as writer:
      for record in kept:
        writer.write(record)

  atomic.write_atomically(path, write)
  logging.info('Dropped %d TensorBoard events after step %d / epoch %d from %s.', dropped,
               step, epoch, path)


def _event_records(path: pathlib.Path) -> list[bytes]:
  """The records of an event file (a TFRecord file), up to a torn last one."""
  records = []
  try:
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
      records.append(record)
  except tf.errors.DataLossError:
    pass  # A record cut short by a killed writer: the ones before it stand.
  return records


def drop_events_after(workdir: str | pathlib.Path, *, step: int, epoch: int) -> None:
  """Removes what a killed run wrote to TensorBoard past the checkpoint resumed from.

  Args:
    workdir: the run's workdir (its own events and those of `train/` and `val/`).
    step: the resumed checkpoint's training step (limit of the per-step scalars).
    epoch: the resumed checkpoint's epoch (limit of the epoch scalars and images).
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    return
  for logdir in (workdir, *sorted(p for p in workdir.iterdir() if p.is_dir())):
    for path in sorted(logdir.glob('events.out.tfevents.*')):
      _drop_file_events_after(path, step, epoch)
