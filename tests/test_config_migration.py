"""`config.json` of every older format reads as today's config (`workdir.config.migrate`)."""

import json

import pytest

from configs import default
from vgg_flax.errors import ConfigError
from vgg_flax.workdir import config as run_config
from vgg_flax.workdir import files

# The fields each older layout of config.json lacks (all of format 1, written before
# `format_version` existed): the configs of the first release, then as each group of fields
# arrived. Dotted names are fields of a section.
# Fields format 2 lacks: the image folders' hold-out and Grad-CAM's.
ADDED_IN_FORMAT_3 = ('val_fraction', 'split_seed', 'explain', 'explain_layer')
ADDED_LATER = ('cpu_conv_grad', 'init_from', 'init_head', 'model.bn_running_var', 'tta',
               'predict_images', 'compilation_cache', 'compilation_cache_dir',
               'grad_accum_steps', 'cache_max_gib', *ADDED_IN_FORMAT_3)
OLDER_FORMATS = {
    'first release': ADDED_LATER,
    'with cpu_conv_grad': ADDED_LATER[1:],
    'with init_from': tuple(f for f in ADDED_LATER
                            if f not in ('init_from', 'init_head', 'model.bn_running_var')),
    'with tta': tuple(f for f in ADDED_LATER if f not in ('tta', 'predict_images')),
    'with the compilation cache': tuple(
        f for f in ADDED_LATER
        if f not in ('compilation_cache', 'compilation_cache_dir', 'grad_accum_steps')),
    'with cache_max_gib': tuple(f for f in ADDED_LATER if f != 'cache_max_gib'),
    'format 1, every field of its time': ADDED_IN_FORMAT_3,
}


def saved_config(lacking: tuple[str, ...]) -> dict:
  """A trained VGG-13's config.json as a version that lacked `lacking` wrote it."""
  config = default.get_config()
  config.model.depth, config.batch_size = 13, 32
  saved = run_config.config_to_dict(config)
  for field in lacking:
    section, _, name = field.rpartition('.')
    (saved[section] if section else saved).pop(name)
  return saved


@pytest.mark.parametrize('name', list(OLDER_FORMATS))
def test_an_older_config_json_reads_as_todays_config(name, tmp_path):
  (tmp_path / files.CONFIG_FILE).write_text(json.dumps(saved_config(OLDER_FORMATS[name])))
  config = run_config.read_config(tmp_path)
  expected = default.get_config()
  expected.model.depth, expected.batch_size = 13, 32
  assert run_config.config_to_dict(config) == run_config.config_to_dict(expected)
  run_config.validate_config(config)  # Every field is there: attribute access works.


def test_a_format_2_config_json_reads_as_todays_config(tmp_path):
  """Written before image folders and Grad-CAM: the hold-out and explain take their defaults
  (explain off; the hold-out never applied to the datasets of that time)."""
  saved = {run_config.FORMAT_KEY: 2, **saved_config(ADDED_IN_FORMAT_3)}
  (tmp_path / files.CONFIG_FILE).write_text(json.dumps(saved))
  config = run_config.read_config(tmp_path)
  assert (config.val_fraction, config.split_seed, config.explain, config.explain_layer) == (
      0.1, 0, False, '')
  expected = default.get_config()
  expected.model.depth, expected.batch_size = 13, 32
  assert run_config.config_to_dict(config) == run_config.config_to_dict(expected)
  run_config.validate_config(config)


def test_todays_config_json_carries_its_version_and_round_trips(tmp_path):
  config = default.get_config()
  config.model.depth = 19
  run_config.write_config(tmp_path, config)
  written = json.loads((tmp_path / files.CONFIG_FILE).read_text())
  assert written[run_config.FORMAT_KEY] == run_config.FORMAT_VERSION
  assert run_config.config_to_dict(run_config.read_config(tmp_path)) == (
      run_config.config_to_dict(config))


def test_a_config_json_of_a_newer_version_is_refused(tmp_path):
  saved = {**saved_config(()), run_config.FORMAT_KEY: run_config.FORMAT_VERSION + 1}
  (tmp_path / files.CONFIG_FILE).write_text(json.dumps(saved))
  with pytest.raises(ConfigError, match='update the project'):
    run_config.read_config(tmp_path)
