"""Every rule of `configuration.validate_config`: the first bad value and the last good one.

Each row names a field, a value the rule refuses with the exact one-line message, and the
nearest value it accepts (so a rule that refuses too much fails here as well).
"""

import jax
import pytest

from configs import default
from vgg_flax.workdir import config as configuration

# (field, refused value, message, nearest accepted value); sections as dotted paths.
RULES = [
    ('model.depth', 12, 'model.depth=12 is not one of 11, 13, 16, 19.', 19),
    ('model.width', 0, 'model.width=0 must be at least 1.', 1),
    ('model.hidden_units', 0, 'model.hidden_units=0 must be at least 1.', 1),
    ('model.pool_size', (2,), 'model.pool_size=(2,) must be two positive ints, e.g. (2, 2).',
     (1, 1)),
    ('model.pool_size', (2, 0), 'model.pool_size=(2, 0) must be two positive ints, e.g. (2, 2).',
     (1, 7)),
    ('model.pool_type', 'median', "model.pool_type='median' is not one of 'max', 'avg'.", 'avg'),
    ('model.bn_running_var', 'exact',
     "model.bn_running_var='exact' is not one of 'unbiased', 'biased'.", 'biased'),
    ('model.dropout_rate', 1.0, 'model.dropout_rate=1.0 must be in [0, 1).', 0.99),
    ('model.dropout_rate', -0.1, 'model.dropout_rate=-0.1 must be in [0, 1).', 0.0),
    ('batch_size', 0, 'batch_size=0 must be a positive int.', 1),
    ('batch_size', 8.0, 'batch_size=8.0 must be a positive int.', 8),
    ('eval_batch_size', -8, 'eval_batch_size=-8 must be a positive int.', 1),
    ('cache', 'yes', "cache='yes' is not one of True, False, 'auto'.", False),
    ('cache_max_gib', 0.0, 'cache_max_gib=0.0 must be a positive number of GiB.', 0.5),
    ('cache_max_gib', '4', "cache_max_gib='4' must be a positive number of GiB.", 1),
    ('learning_rate', 0.0, 'learning_rate=0.0 must be a positive number.', 1e-9),
    ('num_epochs', 0, 'num_epochs=0 must be a positive number.', 1),
    ('num_epochs', 2.5, 'num_epochs=2.5 must be an int.', 2),
    ('log_every_steps', 0, 'log_every_steps=0 must be a positive number.', 1),
    ('image_size', 31, 'image_size=31 is too small for five 2x2 pools; use at least 32.', 32),
    ('optimizer', 'rmsprop', "optimizer='rmsprop' is not one of 'adam', 'adamw', 'sgd'.",
     'sgd'),
    ('schedule', 'step', "schedule='step' is not one of 'constant', 'cosine'.", 'cosine'),
    ('dtype', 'float16', "dtype='float16' is not one of 'float32', 'bfloat16'.", 'bfloat16'),
    ('weight_decay', -0.1, 'weight_decay=-0.1 must be >= 0.', 0.0),
    ('label_smoothing', 1.0, 'label_smoothing=1.0 must be in [0, 1).', 0.99),
    ('label_smoothing', -0.1, 'label_smoothing=-0.1 must be in [0, 1).', 0.0),
    ('warmup_epochs', 50, 'warmup_epochs=50 must be in [0, num_epochs=50).', 49),
    ('warmup_epochs', -1, 'warmup_epochs=-1 must be in [0, num_epochs=50).', 0),
    ('early_stopping.patience', 0, 'early_stopping.patience=0 must be at least 1.', 1),
    ('early_stopping.min_delta', -0.1, 'early_stopping.min_delta=-0.1 must be >= 0.', 0.0),
    ('augment.crop_padding', -1, 'augment.crop_padding=-1 must be >= 0.', 0),
    ('steps_per_epoch', 0, 'steps_per_epoch=0 must be -1 (whole split) or positive.', 1),
    ('steps_per_epoch', -2, 'steps_per_epoch=-2 must be -1 (whole split) or positive.', -1),
    ('max_checkpoints', 0, 'max_checkpoints=0 must be a positive int (2 by default).', 1),
    ('cpu_conv_grad', 'fast', "cpu_conv_grad='fast' is not one of 'taps', 'xla'.", 'taps'),
    ('tta', 'crop', "tta='crop' is not one of 'none', 'flip'.", 'flip'),
    ('compilation_cache', 'yes', "compilation_cache='yes' must be True or False.", False),
    ('compilation_cache_dir', None,
     "compilation_cache_dir=None must be a folder path or '' (beside the workdir).", '/tmp/c'),
    ('grad_accum_steps', 0, 'grad_accum_steps=0 must be an int >= 1.', 1),
    ('grad_accum_steps', 3,
     'batch_size=64 must split into grad_accum_steps=3 micro-batches of a multiple of the 1 '
     'devices; use a multiple of 3.', 4),
    ('init_from', 7, 'init_from=7 must be a path (a state_dict file or a workdir).',
     'weights.pt'),
    ('init_head', 'no', "init_head='no' must be True or False.", False),
    ('explain', 'yes', "explain='yes' must be True or False.", True),
    ('val_fraction', 1.0, 'val_fraction=1.0 must be in (0, 1): the share of train/ held out.',
     0.99),
    ('val_fraction', 0.0, 'val_fraction=0.0 must be in (0, 1): the share of train/ held out.',
     0.01),
    ('split_seed', 1.5, 'split_seed=1.5 must be an integer.', 7),
]


def set_field(config, dotted: str, value) -> None:
  """Sets `config.<dotted>` to `value` whatever its type (a rule must catch any type)."""
  *sections, leaf = dotted.split('.')
  node = config
  for section in sections:
    node = node[section]
  with node.ignore_type():
    node[leaf] = value


def refusal(config) -> str:
  with pytest.raises(configuration.ConfigError) as raised:
    configuration.validate_config(config)
  return str(raised.value)


@pytest.mark.parametrize('field, refused, message, accepted', RULES,
                         ids=[f'{row[0]}={row[1]!r}' for row in RULES])
def test_rule_refuses_in_one_line_and_accepts_the_nearest_good_value(field, refused, message,
                                                                     accepted):
  config = default.get_config()
  set_field(config, field, refused)
  assert refusal(config) == message
  config = default.get_config()
  set_field(config, field, accepted)
  configuration.validate_config(config)


def test_conv1x1_needs_depth_16():
  config = default.get_config()
  config.model.update(depth=13, conv1x1=True)
  assert refusal(config) == ('model.conv1x1=True is defined for model.depth=16 only '
                             '(configuration C), not 13.')
  config.model.depth = 16
  configuration.validate_config(config)


@pytest.mark.parametrize('field', ['batch_size', 'eval_batch_size'])
def test_batches_split_over_the_devices(monkeypatch, field):
  monkeypatch.setattr(jax, 'device_count', lambda: 4)
  config = default.get_config()
  config[field] = 66
  assert refusal(config) == (f'{field}=66 is not divisible by the 4 devices; use a multiple '
                             'of 4.')
  config[field] = 68
  configuration.validate_config(config)


@pytest.mark.parametrize('field', ['batch_size', 'eval_batch_size'])
def test_batches_split_over_the_processes(monkeypatch, field):
  monkeypatch.setattr(jax, 'process_count', lambda: 3)
  config = default.get_config()
  config.update(batch_size=63, eval_batch_size=63)
  config[field] = 64
  assert refusal(config) == f'{field}=64 is not divisible by the 3 processes.'
  config[field] = 66
  configuration.validate_config(config)


def test_micro_batches_split_over_the_devices(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 2)
  config = default.get_config()
  config.update(batch_size=12, grad_accum_steps=4)
  assert refusal(config) == ('batch_size=12 must split into grad_accum_steps=4 micro-batches '
                             'of a multiple of the 2 devices; use a multiple of 8.')
  config.batch_size = 16
  configuration.validate_config(config)


def test_a_zero_warmup_is_fine_for_one_epoch():
  config = default.get_config()
  config.update(num_epochs=1, warmup_epochs=0)
  configuration.validate_config(config)


def test_configs_saved_before_the_optional_fields_validate():
  """Old workdirs' config.json lack the later fields; the migration gives the defaults."""
  config = configuration.config_to_dict(default.get_config())
  for name in ('cpu_conv_grad', 'tta', 'compilation_cache', 'compilation_cache_dir',
               'grad_accum_steps', 'init_from', 'init_head', 'cache_max_gib', 'val_fraction',
               'split_seed', 'explain', 'explain_layer'):
    del config[name]
  del config['model']['bn_running_var']
  configuration.validate_config(configuration.migrate(config))
