"""TensorBoard read back with its own readers: overlaid train/val runs, images, hparams."""

import io
import shutil

import numpy as np
import pytest
from clu import metric_writers
from PIL import Image
from tensorboard import context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import backend_context
from tensorboard.plugins.hparams import list_session_groups
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from input_pipeline import pipeline
from vgg_flax.train import tensorboard_log as summaries
from vgg_flax import train
from vgg_flax.workdir import files
from vgg_flax import plots

METRICS = ('loss', 'accuracy', 'top5_accuracy')


@pytest.fixture(scope='module')
def runs(trained_run):
  """The `runs/` folder that `tensorboard --logdir` is pointed at."""
  return trained_run.workdir.parent


@pytest.fixture(scope='module')
def fresh_run(trained_run):
  """Two epochs in a new workdir (the session's shared run: read it, do not change it)."""
  return trained_run.workdir


@pytest.fixture(scope='module')
def old_layout_run(runs, fresh_run, make_data_config):
  """`fresh_run` as the layout before this one left it (all scalars in the workdir's own
  events, no train/ and val/ runs, no sample figures), then resumed for a third epoch."""
  workdir = runs / 'old'
  shutil.copytree(fresh_run, workdir)
  for path in [workdir / 'train', workdir / 'val', *workdir.glob('events.out.tfevents.*')]:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
  for path in summaries.sample_paths(workdir).values():
    path.unlink()
  before = files.read_history(workdir / 'history.csv')
  old_writer = metric_writers.create_default_writer(workdir, asynchronous=False)
  for row in before:
    old_writer.write_scalars(6 * row['epoch'], {f'epoch/{k}': v for k, v in row.items()})
  old_writer.close()
  config = make_data_config()
  config.num_epochs = 3
  train.train_and_evaluate(config, str(workdir))
  return workdir, before


def read_run(path) -> event_accumulator.EventAccumulator:
  events = event_accumulator.EventAccumulator(str(path), size_guidance={'tensors': 0})
  events.Reload()
  return events


def values(events, tag) -> tuple[list[int], list[float]]:
  tensors = events.Tensors(tag)
  return ([e.step for e in tensors],
          [tensor_util.make_ndarray(e.tensor_proto).item() for e in tensors])


def images(events, tag) -> list[tuple[int, np.ndarray]]:
  """(step, RGB pixels) of each image written under `tag`."""
  result = []
  for event in events.Tensors(tag):
    width, height, png = tensor_util.make_ndarray(event.tensor_proto)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
    assert pixels.shape == (int(height), int(width), 3)
    result.append((event.step, pixels))
  return result


def new_best_epochs(history: list[dict]) -> list[int]:
  best, epochs = float('inf'), []
  for row in history:
    if row['val_loss'] < best:
      best = row['val_loss']
      epochs.append(row['epoch'])
  return epochs


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_train_and_val_runs_carry_the_same_tags_once_an_epoch(fresh_run):
  history = files.read_history(fresh_run / 'history.csv')
  train_run, val_run = read_run(fresh_run / 'train'), read_run(fresh_run / 'val')
  for metric in METRICS:
    for run, prefix in ((train_run, 'train'), (val_run, 'val')):
      epochs, logged = values(run, metric)
      assert epochs == [1, 2]
      np.testing.assert_allclose(logged, [row[f'{prefix}_{metric}'] for row in history],
                                 rtol=1e-6)
  # Per-step training scalars stay, in their own section of the train run (x = step):
  # 96 images / batch 16 = 6 steps an epoch, logged every 2 steps.
  for tag in ('per_step/loss', 'per_step/accuracy', 'per_step/learning_rate'):
    assert values(train_run, tag)[0] == [2, 4, 6, 8, 10, 12]
  np.testing.assert_allclose(values(train_run, 'per_step/learning_rate')[1], 1e-3, rtol=1e-6)
  assert values(train_run, 'housekeeping/epoch_seconds') == (
      [1, 2], pytest.approx([row['seconds'] for row in history]))
  train_tags = set(train_run.Tags()['tensors'])
  assert 'per_step/steps_per_sec' in train_tags
  assert not any(tag.startswith('epoch') for tag in train_tags | set(val_run.Tags()['tensors']))
  assert not any(tag.startswith('per_step') for tag in val_run.Tags()['tensors'])


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_val_run_holds_the_best_epoch_so_far(fresh_run):
  history = files.read_history(fresh_run / 'history.csv')
  val_run = read_run(fresh_run / 'val')
  expected = []
  for i in range(len(history)):
    expected.append(min(history[:i + 1], key=lambda row: row['val_loss']))
  assert values(val_run, 'best/epoch') == ([1, 2], [row['epoch'] for row in expected])
  for metric in METRICS:
    np.testing.assert_allclose(values(val_run, f'best/{metric}')[1],
                               [row[f'val_{metric}'] for row in expected], rtol=1e-6)


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_sample_figures_are_the_tensorboard_images(fresh_run):
  assert plots.grid_shape(summaries.SAMPLE_IMAGES) == (4, 4)
  size = (4 * plots.GRID_CELL_PX[0], 4 * plots.GRID_CELL_PX[1])
  for run, tag in (('train', 'train_sample'), ('val', 'val_sample')):
    written = images(read_run(fresh_run / run), tag)
    assert [step for step, _ in written] == [0]
    with Image.open(fresh_run / 'plots' / f'{tag}.png') as png:
      assert png.size == size
      np.testing.assert_array_equal(np.asarray(png.convert('RGB')), written[0][1])


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_best_predictions_at_each_new_best_epoch(fresh_run):
  history = files.read_history(fresh_run / 'history.csv')
  written = images(read_run(fresh_run / 'val'), 'best_predictions')
  assert [step for step, _ in written] == new_best_epochs(history)
  with Image.open(fresh_run / 'plots' / 'val_sample.png') as png:
    assert all(pixels.shape == (png.size[1], png.size[0], 3) for _, pixels in written)


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_hparams_declare_the_best_metrics(fresh_run):
  root = read_run(fresh_run)
  assert root.Tags()['tensors'] and not any(  # The workdir's own run holds hparams only.
      not tag.startswith('_hparams_/') for tag in root.Tags()['tensors'])
  content = root.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
  experiment = hparams_metadata.parse_experiment_plugin_data(
      content[hparams_metadata.EXPERIMENT_TAG])
  declared = {(m.name.group, m.name.tag): m.display_name for m in experiment.metric_infos}
  assert declared == {('val', 'best/accuracy'): 'best val top-1',
                      ('val', 'best/top5_accuracy'): 'best val top-5',
                      ('val', 'best/loss'): 'best val loss',
                      ('val', 'best/epoch'): 'best epoch'}
  hparam_names = [h.name for h in experiment.hparam_infos]
  assert {'model.depth', 'learning_rate', 'batch_size', 'augment.flip'} <= set(hparam_names)
  # The fields that tell models apart are the columns TensorBoard shows first.
  assert {h.name for h in experiment.hparam_infos if h.differs} == set(summaries.KEY_HPARAMS)
  session = hparams_metadata.parse_session_start_info_plugin_data(
      content[hparams_metadata.SESSION_START_INFO_TAG])
  assert session.hparams['model.depth'].number_value == 11
  assert session.group_name == f'{fresh_run.parent.name}/fresh'


def session_groups(logdir, sort_by: str) -> list:
  """What the HPARAMS table lists for `tensorboard --logdir logdir`, best first."""
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(logdir))
  multiplexer.Reload()
  tb_context = base_plugin.TBContext(
      logdir=str(logdir), multiplexer=multiplexer,
      data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)))
  request = api_pb2.ListSessionGroupsRequest(
      start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_UNKNOWN],
      col_params=[api_pb2.ColParams(metric=api_pb2.MetricName(group='val', tag=sort_by),
                                    order=api_pb2.ORDER_DESC)])
  return list(list_session_groups.Handler(context.RequestContext(),
                                          backend_context.Context(tb_context), '',
                                          request).run().session_groups)


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_hparams_table_ranks_the_runs_of_a_logdir(runs, fresh_run, old_layout_run):
  old_run, _ = old_layout_run
  best = {}
  for workdir in (fresh_run, old_run):
    history = files.read_history(workdir / 'history.csv')
    best[workdir.name] = min(history, key=lambda row: row['val_loss'])
  groups = session_groups(runs, sort_by='best/accuracy')
  assert len(groups) == 2
  accuracies = []
  for group in groups:
    (session,) = group.sessions
    assert group.name == f'{runs.name}/{session.name}'  # Named by the workdir, not a hash.
    row = best[session.name]
    metrics = {m.name.tag: m.value for m in group.metric_values}
    assert metrics == pytest.approx({'best/accuracy': row['val_accuracy'],
                                     'best/top5_accuracy': row['val_top5_accuracy'],
                                     'best/loss': row['val_loss'], 'best/epoch': row['epoch']})
    assert group.hparams['num_epochs'].number_value == {'fresh': 2, 'old': 3}[session.name]
    accuracies.append(metrics['best/accuracy'])
  assert accuracies == sorted(accuracies, reverse=True)


@pytest.mark.slow  # Trains end to end: reads the session's two-epoch run.
def test_old_layout_workdir_resumes_into_the_new_runs(old_layout_run):
  workdir, before = old_layout_run
  history = files.read_history(workdir / 'history.csv')
  assert [row['epoch'] for row in history] == [1, 2, 3]
  assert history[:2] == before  # The resumed run left the finished epochs' rows alone.
  # Epochs 1 and 2 (from history.csv) and epoch 3 are all in the new runs.
  for run, prefix in (('train', 'train'), ('val', 'val')):
    for metric in METRICS:
      epochs, logged = values(read_run(workdir / run), metric)
      assert epochs == [1, 2, 3]
      np.testing.assert_allclose(logged, [row[f'{prefix}_{metric}'] for row in history],
                                 rtol=1e-6)
  for path in summaries.sample_paths(workdir).values():
    assert path.exists()
  for name in ('loss.png', 'accuracy.png'):
    assert (workdir / 'plots' / name).exists()


def test_image_grid_puts_each_image_in_its_cell():
  colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                     [255, 0, 255]], np.uint8)
  tiles = np.broadcast_to(colors[:, None, None, :], (6, 8, 8, 3))
  pixels = plots.draw_image_grid(tiles, [f'class {i}' for i in range(6)])
  rows, columns = plots.grid_shape(6)
  assert (rows, columns) == (2, 4)
  assert pixels.shape == (rows * plots.GRID_CELL_PX[1], columns * plots.GRID_CELL_PX[0], 3)
  centres = []
  for color in colors:
    ys, xs = np.nonzero(np.all(pixels == color, axis=-1))
    assert len(ys) > 40 * 40  # A solid block, not a few stray pixels.
    centres.append((ys.mean(), xs.mean()))
  cell_h, cell_w = pixels.shape[0] / rows, pixels.shape[1] / columns
  # Row by row, four to a row, each colour in its own cell.
  assert [(int(y // cell_h), int(x // cell_w)) for y, x in centres] == [
      (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]


def test_prediction_titles_colour_correct_and_wrong():
  info = pipeline.DatasetInfo(
      num_classes=3, class_names=('goldfish, Carassius auratus', 'tabby, tabby cat',
                                  'a very long class name indeed, longer'),
      label_names=('n1', 'n2', 'n3'), split_sizes={}, image_shape=(64, 64, 3))
  titles, colors = summaries.prediction_titles(info, np.array([0, 1, 2]), np.array([0, 2, 2]))
  assert titles == ['goldfish\ntrue: goldfish', 'tabby\ntrue: a very long class name indeed',
                    'a very long class name indeed\ntrue: a very long class name indeed']
  assert colors == [summaries.CORRECT_COLOR, summaries.WRONG_COLOR, summaries.CORRECT_COLOR]


def test_titles_too_wide_for_a_cell_are_cut():
  font = plots.grid_font()
  assert plots.fit_text('goldfish', 100, font) == 'goldfish'
  cut = plots.fit_text('true: ' + 'W' * 40, 120, font)
  assert cut.startswith('true: WW') and cut.endswith('\u2026')
  assert 110 < font.getlength(cut) <= 120
