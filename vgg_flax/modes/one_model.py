"""`--mode=evaluate` and `--mode=predict`: the `best/` checkpoint of one workdir.

The model and the config it runs with come from `workdir.restore` (what the command line may
change is described there); the split runs through `modes.predictions`, the one evaluation
step training uses. This module turns the results into `eval_results.json` and the prediction
CSVs, and with `explain=True` hands the images to `modes.gradcam`. The ensemble of several
workdirs and the votes are in `modes.ensemble`.
"""

import pathlib

import jax
import ml_collections
import numpy as np

from input_pipeline import pipeline
from vgg_flax import plots
from vgg_flax.modes import gradcam
from vgg_flax.modes import own_images
from vgg_flax.modes import per_class
from vgg_flax.modes import predictions as model_predictions
from vgg_flax.workdir import atomic
from vgg_flax.workdir import files
from vgg_flax.workdir import restore

TOP_K = 5


# --- The modes of main.py -----------------------------------------------------------------


def _restore(config: ml_collections.ConfigDict, workdir: str) -> restore.RestoredModel:
  """The workdir's `best/` model, on the command line's data when it names any."""
  restored = restore.restore_model(str(workdir), workdir, runtime=config,
                                   data=config if restore.names_data(config) else None)
  if restored.config.explain:  # A wrong layer name fails before predicting.
    gradcam.resolve_layer(restored.model, restored.config.explain_layer)
  return restored


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`--mode=evaluate`: the `best/` checkpoint on `config.eval_split`.

  Prints loss, top-1 and top-5 accuracy and writes them, with the `tta` used, to
  `<workdir>/eval_results.json`; writes `per_class_accuracy.csv` and `plots/confusion.png`
  (see `modes.per_class`).

  Args:
    config: the command line's config (see `workdir.restore` for what it changes).
    workdir: a training workdir.

  Returns:
    The results written to `eval_results.json`.
  """
  restored = _restore(config, workdir)
  split, tta = restored.config.eval_split, restored.config.tta
  predictions = model_predictions.predict_split(restored, split)
  if (predictions.labels < 0).any():
    raise pipeline.DataError(f'split {split!r} is unlabelled: it cannot be evaluated; choose '
                             'a labelled eval_split.')
  metrics = predictions.metrics  # The eval step's, as training's validation reports them.
  results = {'workdir': str(workdir), 'split': split, 'best_epoch': restored.best_epoch,
             'tta': tta, 'loss': metrics['loss'], 'accuracy': metrics['accuracy'],
             'top5_accuracy': metrics['top5_accuracy'],
             'num_images': int(len(predictions.labels))}
  print(f'{workdir} (best epoch {restored.best_epoch}) on {split}: loss {results["loss"]:.4f}, '
        f'top-1 {results["accuracy"]:.4f}, top-5 {results["top5_accuracy"]:.4f} '
        f'({results["num_images"]} images, tta {tta})')
  if jax.process_index() == 0:
    info = restored.info
    per_class.write_per_class_results(workdir, predictions.labels, predictions.predictions,
                                      info.label_names, info.class_names)
    atomic.write_json(pathlib.Path(workdir) / files.EVAL_RESULTS_FILE, results)
  if restored.config.explain:
    gradcam.explain_mistakes(restored, predictions)
  return results


PREDICTION_COLUMNS = ('images', 'class_index', 'wnid', 'class_words', 'probability',
                      'top5_indices')


def prediction_rows(predictions: model_predictions.SplitPredictions,
                    info: pipeline.DatasetInfo) -> list[list]:
  """One `PREDICTION_COLUMNS` row per image."""
  return _rows(predictions.file_names, predictions.probabilities, info)


def _rows(names, probabilities: np.ndarray, info: pipeline.DatasetInfo) -> list[list]:
  """Name, top-1 class (index, wnid, words), its probability and the top-5 indices."""
  top = np.argsort(-probabilities, axis=-1, kind='stable')[:, :TOP_K]
  rows = []
  for name, probs, best in zip(names, probabilities, top):
    rows.append([name, int(best[0]), info.label_names[best[0]], info.class_names[best[0]],
                 f'{probs[best[0]]:.6f}', ' '.join(str(int(i)) for i in best)])
  return rows


def predict_workdir(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """`--mode=predict`: the `best/` checkpoint on `config.predict_split`.

  With `config.predict_images` set, on those images instead (see `predict_own_images`).

  Writes `<workdir>/test_predictions.csv` (whatever the split), one row per image in
  file-name order: `images, class_index, wnid, class_words, probability, top5_indices`
  (space-separated, most probable first).

  Args:
    config: the command line's config (see `workdir.restore` for what it changes).
    workdir: a training workdir.

  Returns:
    The path of the CSV.
  """
  restored = _restore(config, workdir)
  if restored.config.predict_images:
    return predict_own_images(restored, skip_corrupt=bool(config.skip_corrupt))
  explain = restored.config.explain
  predictions = model_predictions.predict_split(
      restored, restored.config.predict_split, keep_images=gradcam.GRID_IMAGES if explain else 0)
  path = pathlib.Path(workdir) / files.TEST_PREDICTIONS_FILE
  if jax.process_index() == 0:
    atomic.write_csv(path, PREDICTION_COLUMNS, prediction_rows(predictions, restored.info))
  print(f'{len(predictions.file_names)} predictions on {predictions.split} -> {path}')
  if explain:
    gradcam.explain_first_images(restored, predictions)
  return path


IMAGE_PREDICTION_COLUMNS = ('path', *PREDICTION_COLUMNS[1:])
IMAGE_PREDICTIONS_FILE = files.IMAGE_PREDICTIONS_FILE
# Up to this many images, each one's top-1 is printed.
MAX_PRINTED_IMAGES = 20


def stored_image_shape(restored: restore.RestoredModel) -> tuple[int, int, int]:
  """The shape the dataset stores images in: own images are brought to it."""
  shape = tuple(restored.info.image_shape)
  if None in shape:  # Variable-size datasets: straight to the model's size.
    size = restored.config.image_size
    return size, size, shape[-1] or 3
  return shape


def predict_own_images(restored: restore.RestoredModel, *, skip_corrupt: bool = False,
                       mesh=None) -> pathlib.Path:
  """Predicts the images `restored.config.predict_images` names.

  Writes `<workdir>/image_predictions.csv`, one row per image in file-name order: `path,
  class_index, wnid, class_words, probability, top5_indices`, and prints each image's top-1
  when there are at most `MAX_PRINTED_IMAGES`.

  Args:
    restored: from `restore.restore_model`.
    skip_corrupt: skip unreadable files (counted in the message) instead of failing.
    mesh: the device mesh; default all devices.

  Returns:
    The path of the CSV.

  Raises:
    DataError: nothing matches, or a file cannot be read (without `skip_corrupt`).
  """
  paths = own_images.find_images(restored.config.predict_images)
  images, read, skipped = own_images.load_images(paths, stored_image_shape(restored),
                                                 skip_corrupt=skip_corrupt)
  probabilities = np.exp(model_predictions.predict_array(restored, images, mesh=mesh))
  rows = _rows(read, probabilities, restored.info)
  path = restored.workdir / IMAGE_PREDICTIONS_FILE
  if jax.process_index() == 0:
    atomic.write_csv(path, IMAGE_PREDICTION_COLUMNS, rows)
  if len(rows) <= MAX_PRINTED_IMAGES:
    for row in rows:
      print(f'{row[0]}: {plots.short_words(row[3])} ({row[2]}, class {row[1]}, p={row[4]})')
  skipped_note = (f'; skipped {len(skipped)} unreadable: {", ".join(skipped[:3])}'
                  f'{" ..." if len(skipped) > 3 else ""}' if skipped else '')
  print(f'{len(rows)} predictions (tta {restored.config.tta}) -> {path}'
        f'{skipped_note}')
  if restored.config.explain:
    gradcam.explain_own_images(restored, images, read, mesh=mesh)
  return path

