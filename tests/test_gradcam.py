"""Grad-CAM: the map is the paper's formula, and a trained model's map lands on the evidence."""

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import default
from input_pipeline import folder_sample
from vgg_flax import plots
from vgg_flax import train
from vgg_flax.core import models
from vgg_flax.core import preprocess
from vgg_flax.errors import ConfigError
from vgg_flax.modes import gradcam
from vgg_flax.modes import one_model
from vgg_flax.modes import predictions as model_predictions
from vgg_flax.workdir import restore

NUM_CLASSES = 3


@pytest.fixture(scope='module')
def tiny_model():
  """A VGG-11 of width 4 at 32 px, with random BatchNorm statistics, and 4 images."""
  model = models.VGG11(num_classes=NUM_CLASSES, width=4, hidden_units=8)
  images = jax.random.randint(jax.random.key(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  # Statistics other than (0, 1), so the BatchNorm of eval mode matters.
  keys = iter(jax.random.split(jax.random.key(2), 100))
  stats = jax.tree.map(lambda v: v + jax.random.uniform(next(keys), v.shape, minval=-0.1,
                                                        maxval=0.1), variables['batch_stats'])
  # Dense layers at unit gain instead of N(0, 0.01): maps of order 0.01-0.1 instead of 1e-6,
  # so an absolute 1e-5 is a strict comparison.
  params = dict(variables['params'])
  for name in ('fc1', 'fc2', 'fc3'):
    kernel = params[name]['kernel']
    params[name] = {**params[name], 'kernel': kernel / (0.01 * kernel.shape[0] ** 0.5)}
  return model, {'params': params, 'batch_stats': stats}, images


def conv_block(variables, name: str, x: jax.Array) -> jax.Array:
  """A VGG block by hand: 3x3 conv with bias, BatchNorm with the running statistics, ReLU."""
  conv, bn = variables['params'][f'{name}_conv'], variables['params'][f'{name}_bn']
  stats = variables['batch_stats'][f'{name}_bn']
  x = jax.lax.conv_general_dilated(x, conv['kernel'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + conv['bias']
  x = (x - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5) * bn['scale'] + bn['bias']
  return jax.nn.relu(x)


def hand_written_cam(model, variables, images, classes, layer):
  """Grad-CAM written out: A from the block's captured output, the rest of the network (for
  stage5_1 the last block too; a 2x2 pool, the 1x1 -> 2x2 head pool, three dense layers) by
  hand, and dy/dA by `jax.grad` of that function of A: at every position, active or not."""
  x = preprocess.preprocess(images, image_size=32)
  _, state = model.apply(variables, x, train=False, mutable=['intermediates'],
                         capture_intermediates=lambda module, _: module.name == f'{layer}_bn')
  a = jax.nn.relu(state['intermediates'][f'{layer}_bn']['__call__'][0])  # (n, 2, 2, k)
  params = variables['params']

  def logits(a):
    x = conv_block(variables, 'stage5_2', a) if layer == 'stage5_1' else a
    x = nn.max_pool(x, (2, 2), strides=(2, 2))  # (n, 1, 1, k)
    x = jnp.broadcast_to(x, (x.shape[0], 2, 2, x.shape[-1]))  # Adaptive pool 1x1 -> 2x2.
    x = x.reshape(x.shape[0], -1)
    for name in ('fc1', 'fc2', 'fc3'):
      x = x @ params[name]['kernel'] + params[name]['bias']
      x = jax.nn.relu(x) if name != 'fc3' else x
    return x

  gradient = jax.grad(lambda a: logits(a)[jnp.arange(len(a)), classes].sum())(a)
  weights = gradient.mean(axis=(1, 2))
  return jax.nn.relu(jnp.einsum('nhwk,nk->nhw', a, weights)), jax.nn.log_softmax(logits(a))


@pytest.mark.parametrize('layer', ['stage5_2', 'stage5_1'])
def test_the_map_is_the_papers_formula_written_by_hand(tiny_model, layer):
  model, variables, images = tiny_model
  labels = jnp.array([0, 1, 2, -1])
  log_probs, top1_maps, label_maps = jax.jit(
      lambda v, i, l: gradcam.class_activation_maps(model, v, i, l, layer=layer,
                                                    image_size=32))(variables, images, labels)
  top1 = jnp.argmax(log_probs, axis=-1)
  expected_top1, expected_log_probs = hand_written_cam(model, variables, images, top1, layer)
  expected_labels, _ = hand_written_cam(model, variables, images,
                                        jnp.where(labels >= 0, labels, top1), layer)
  np.testing.assert_allclose(log_probs, expected_log_probs, atol=1e-5)
  np.testing.assert_allclose(top1_maps, expected_top1, atol=1e-5)
  np.testing.assert_allclose(label_maps, expected_labels, atol=1e-5)
  assert float(expected_top1.max()) > 0.01  # Not vacuous: 1e-5 is under 0.1% of the peak.
  assert not np.allclose(label_maps[:3], top1_maps[:3])  # Other classes, other maps.


def test_batches_and_upsampling_give_the_maps_of_one_call(tiny_model):
  model, variables, images = tiny_model
  labels = np.array([2, -1, 0, 1])
  result = gradcam.explain(model, variables, np.asarray(images), labels, image_size=32,
                           batch_size=3)  # Two calls, the last padded.
  _, top1, label = gradcam.class_activation_maps(model, variables, images, labels,
                                                 layer='stage5_2', image_size=32)
  assert result.top1_maps.shape == (4, 32, 32)
  np.testing.assert_allclose(result.top1_maps, gradcam.upsample(top1, (32, 32)), atol=1e-6)
  np.testing.assert_allclose(result.label_maps, gradcam.upsample(label, (32, 32)), atol=1e-6)
  np.testing.assert_allclose(result.probabilities.sum(-1), 1, atol=1e-5)


def test_an_unknown_layer_is_one_line_naming_the_blocks(tiny_model):
  model = tiny_model[0]
  assert gradcam.resolve_layer(model, '') == 'stage5_2'
  assert gradcam.resolve_layer(model, 'stage3_1') == 'stage3_1'
  with pytest.raises(ConfigError) as raised:
    gradcam.resolve_layer(model, 'conv5')
  message = str(raised.value)
  assert '\n' not in message
  assert "explain_layer='conv5'" in message and 'stage1_1, stage2_1, stage3_1' in message


def test_pictures_mark_right_and_wrong_and_name_files_uniquely(tmp_path):
  images = np.zeros((2, 32, 32, 3), np.uint8)
  maps = np.random.default_rng(0).uniform(size=(2, 32, 32)).astype(np.float32)
  result = gradcam.Explanations(probabilities=np.array([[0.7, 0.3], [0.6, 0.4]]),
                                top1=np.array([0, 0]), top1_maps=maps, label_maps=maps)
  names = ['cat/a.jpg', 'cat/a.png']
  grid = gradcam.write_explanations(tmp_path, names, images, np.array([0, 1]), result,
                                    ['cat', 'dog'])
  right, wrong = (np.asarray(Image.open(tmp_path / 'explanations' / p))
                  for p in ('cat/a.png', 'cat/a.png.png'))
  cell = plots.GRID_CELL_PX[0]
  assert right.shape[1] == 2 * cell and wrong.shape[1] == 3 * cell  # + the true class's map.
  assert np.asarray(Image.open(grid)).shape[1] == 6 * cell  # Two strips a row.


# --- A trained model looks at the evidence ---------------------------------------------------

SIZE = 64  # The blocks of stage 3 then see 16x16 maps: a patch is a 4x4 block of cells.
# The block measured: at 64 px the last block's 4x4 cells each see the whole image, and its
# maps are diffuse (docs/performance.md has every block's figure).
LAYER = 'stage3_1'
PATCH_SHARE = 1 / 16  # A quarter of the side, squared.
MIN_MASS = 4 * PATCH_SHARE


@pytest.fixture(scope='module')
def patch_run(tmp_path_factory):
  """A VGG-11 trained on three classes told apart only by a patch's place and pattern."""
  root = tmp_path_factory.mktemp('patches')
  source = folder_sample.write_folder(root / 'data', kind='patches', num_classes=NUM_CLASSES,
                                      train_per_class=60, val_per_class=0, test_images=0,
                                      image_size=SIZE)
  config = default.get_config()
  config.dataset = 'image_folder'
  config.data_source, config.data_dir = str(source), str(root / 'tfds')
  config.image_size, config.batch_size, config.eval_batch_size = SIZE, 16, 16
  config.model.depth, config.model.width, config.model.hidden_units = 11, 8, 32
  config.augment.flip = False  # A mirrored patch would sit at another class's place.
  config.num_epochs, config.progress_bar, config.log_every_steps = 5, False, 5
  train.train_and_evaluate(config, str(root / 'run'))
  return config, root / 'run', pathlib.Path(source)


@pytest.mark.slow  # Trains for five epochs.
def test_a_trained_models_map_lands_on_the_patch(patch_run, tmp_path):
  config, workdir, source = patch_run
  config.explain_layer = LAYER
  restored = restore.restore_model('patches', workdir, runtime=config)
  batches = list(restored.dataset.eval_batches(config, 'validation'))
  images = np.concatenate([b['image'][b['mask']] for b in batches])
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  result = gradcam.explain(restored.model, restored.variables, images, labels, layer=LAYER,
                           image_size=SIZE)
  assert (result.top1 == labels).mean() >= 0.9
  mass = []
  for heat, label in zip(result.label_maps, labels):
    top, left, bottom, right = folder_sample.patch_box(restored.info.label_names[label], SIZE)
    mass.append(heat[top:bottom, left:right].sum() / heat.sum())
  assert np.mean(mass) > MIN_MASS, (np.mean(mass), mass)

  # --mode=predict with explain on a class folder: a map per image, the true class known.
  config.predict_images, config.explain = str(source / 'train' / 'top_left'), True
  one_model.predict_workdir(config, str(workdir))
  written = sorted((workdir / gradcam.EXPLANATIONS_DIR).glob('*.png'))
  assert len(written) == 60 and written[0].name == 'top_left_0.png'
  assert (workdir / 'plots' / gradcam.GRID_FILE).is_file()


@pytest.mark.slow  # Uses the five-epoch run.
def test_predict_on_a_split_and_the_mistakes_of_evaluate(patch_run, monkeypatch):
  config, workdir, _ = patch_run
  config = config.copy_and_resolve_references()
  config.explain, config.predict_images, config.predict_split = True, '', 'validation'
  one_model.predict_workdir(config, str(workdir))  # The split's first GRID_IMAGES images.
  written = sorted((workdir / gradcam.EXPLANATIONS_DIR).glob('*/*.png'))
  assert len(written) == gradcam.GRID_IMAGES
  assert {p.parent.name for p in written} <= set(folder_sample.PATCH_CELLS)

  # evaluate's grid: the most confident mistakes, read back from the split by file name.
  # Two right answers get a wrong label, so the model makes at least two mistakes.
  restored = restore.restore_model('patches', workdir, runtime=config)
  predictions = model_predictions.predict_split(restored, 'validation')
  right = np.flatnonzero(predictions.predictions == predictions.labels)[:2]
  predictions.labels = predictions.labels.copy()
  predictions.labels[right] = (predictions.labels[right] + 1) % NUM_CLASSES
  mistakes = int((predictions.predictions != predictions.labels).sum())
  drawn = []
  monkeypatch.setattr(plots, 'draw_heat_maps',
                      lambda image, maps, *args: drawn.append(len(maps)) or np.zeros(
                          (8, 8 * (1 + len(maps)), 3), np.uint8))
  grid = gradcam.explain_mistakes(restored, predictions)
  assert grid == workdir / 'plots' / gradcam.GRID_FILE and grid.is_file()
  # Each mistake: its top-1 map and its true class's map.
  assert len(right) == 2 and drawn == [2] * min(mistakes, gradcam.GRID_IMAGES)
