"""Test-time augmentation: the flip's arithmetic, the config field, and every mode using it."""

import json

import numpy as np
import pytest

import converted_workdir
from configs import default
from configs import ensemble as ensemble_config
from vgg_flax.workdir import config as configuration
from vgg_flax.modes import ensemble
from vgg_flax.modes import predictions as inference
from vgg_flax.core import models
from vgg_flax.modes import one_model as predict
from vgg_flax.core import steps
from vgg_flax.workdir import restore


def softmax(logits):
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope='module')
def tiny():
  model = models.VGG(depth=11, num_classes=5, width=4, hidden_units=16)
  variables = converted_workdir.sharp_variables(model, 32, seed=1)
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  return model, variables, images


def log_probs(tiny_model, images, tta):
  model, variables, _ = tiny_model
  return np.asarray(steps.infer_log_probs(model.apply, variables, images, image_size=32,
                                          dtype=np.float32, tta=tta))


def logits(tiny_model, images):
  model, variables, _ = tiny_model
  return np.asarray(steps.infer_logits(model.apply, variables, images, image_size=32,
                                       dtype=np.float32))


def test_no_tta_is_the_log_softmax(tiny):
  images = tiny[2]
  np.testing.assert_allclose(np.exp(log_probs(tiny, images, 'none')),
                             softmax(logits(tiny, images)), atol=1e-6)


def test_flip_is_the_mean_softmax_of_the_image_and_its_mirror(tiny):
  images = tiny[2]
  want = (softmax(logits(tiny, images)) + softmax(logits(tiny, images[:, :, ::-1]))) / 2
  got = np.exp(log_probs(tiny, images, 'flip'))
  np.testing.assert_allclose(got, want, atol=1e-6)
  # The mirror matters for these images: the flip changes the probabilities.
  assert np.abs(got - np.exp(log_probs(tiny, images, 'none'))).max() > 1e-3


def test_flip_of_a_mirror_symmetric_image_changes_nothing(tiny):
  half = tiny[2][:, :, :16]
  symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
  np.testing.assert_allclose(log_probs(tiny, symmetric, 'flip'),
                             log_probs(tiny, symmetric, 'none'), atol=1e-5)


def test_unknown_tta_mode(tiny):
  with pytest.raises(ValueError, match="tta='mirror' is not one of 'none', 'flip'"):
    log_probs(tiny, tiny[2], 'mirror')


# --- The config fields ----------------------------------------------------------------------


def test_bad_tta_is_a_one_line_error():
  config = default.get_config()
  config.tta = 'mirror'
  with pytest.raises(configuration.ConfigError) as raised:
    configuration.validate_config(config)
  assert str(raised.value) == "tta='mirror' is not one of 'none', 'flip'."


def test_old_workdir_configs_without_the_fields_still_work():
  saved = default.get_config().to_dict()
  del saved['tta'], saved['predict_images']
  saved = configuration.migrate(saved)
  configuration.validate_config(saved)
  runtime = default.get_config()
  runtime.tta = 'flip'
  resolved = restore.resolve_config(saved, runtime, saved)
  assert resolved.tta == 'flip' and resolved.predict_images == ''
  # An old runtime config (without them) leaves the defaults in force.
  old_runtime = configuration.migrate(saved.to_dict())
  assert restore.resolve_config(saved, old_runtime, saved).get('tta', 'none') == 'none'


# --- Every mode -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, sample_folder, tfds_data_dir, sample_params):
  path = tmp_path_factory.mktemp('tta') / 'run'
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  converted_workdir.write_workdir(path, config, sample_params['num_classes'], seed=5)
  return path


def restored_with(workdir, sample_folder, tfds_data_dir, tta):
  config = converted_workdir.small_config(sample_folder, tfds_data_dir, image_size=32)
  config.tta = tta
  return config, restore.restore_model('run', workdir, runtime=config, data=config)


@pytest.fixture(scope='module')
def validation(workdir, sample_folder, tfds_data_dir):
  """The validation images and labels, and the plain model's probabilities on them and on
  their mirror images."""
  _, plain = restored_with(workdir, sample_folder, tfds_data_dir, 'none')
  batches = list(plain.dataset.eval_batches(plain.config, 'validation'))
  mask = np.concatenate([b['mask'] for b in batches])
  images = np.concatenate([b['image'] for b in batches])[mask]
  labels = np.concatenate([b['label'] for b in batches])[mask]
  return (images, labels, np.exp(inference.predict_array(plain, images)),
          np.exp(inference.predict_array(plain, images[:, :, ::-1])))


def test_predict_with_flip_averages_the_mirror(workdir, sample_folder, tfds_data_dir,
                                               validation):
  images, _, plain, mirrored = validation
  _, flip = restored_with(workdir, sample_folder, tfds_data_dir, 'flip')
  np.testing.assert_allclose(np.exp(inference.predict_array(flip, images)),
                             (plain + mirrored) / 2, atol=1e-5)


def test_evaluate_with_flip_scores_the_averaged_probabilities(workdir, sample_folder,
                                                             tfds_data_dir, validation):
  _, labels, plain, mirrored = validation
  config, _ = restored_with(workdir, sample_folder, tfds_data_dir, 'flip')
  results = predict.evaluate_workdir(config, str(workdir))
  mean = (plain + mirrored) / 2
  assert results['tta'] == 'flip'
  assert json.loads((workdir / 'eval_results.json').read_text())['tta'] == 'flip'
  assert results['loss'] == pytest.approx(-np.mean(np.log(mean[np.arange(len(labels)),
                                                               labels])), abs=1e-5)
  assert results['accuracy'] == pytest.approx(np.mean(mean.argmax(-1) == labels))


def test_ensemble_uses_and_reports_the_tta(workdir, tmp_path, validation):
  _, labels, plain, mirrored = validation
  config = ensemble_config.get_config()
  config.members = (('a', str(workdir)),)
  config.eval_batch_size = 16
  config.progress_bar = False
  config.tta = 'flip'
  report = ensemble.predict_ensemble(config, str(tmp_path))
  assert report['tta'] == 'flip'
  assert json.loads((tmp_path / 'ensemble_report.json').read_text())['tta'] == 'flip'
  flipped = ((plain + mirrored) / 2).argmax(-1)
  assert report['member_accuracy']['a'] == pytest.approx(np.mean(flipped == labels))
  assert report['soft_vote_accuracy'] == pytest.approx(np.mean(flipped == labels))
