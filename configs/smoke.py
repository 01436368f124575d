"""A narrow VGG-11 on a generated sample in the Tiny ImageNet layout: the first command.

  python main.py --config=configs/smoke.py --workdir=runs/smoke

The first run draws the sample (20 classes, 250 training and 50 validation images each)
into data/, prepares it through the `tiny_imagenet` TFDS builder, then trains. Point
`--config.data_source` at any folder or zip in the Tiny ImageNet layout to train the same
recipe on that data. Expected on a 2-core CPU: about two minutes, validation accuracy
about 0.71 after 10 epochs (chance is 0.05;
tests/test_train.py asserts at least EXPECTED_MIN_VAL_ACCURACY).
"""

from configs import default

# The smoke test asserts at least this validation accuracy (chance is 0.05).
EXPECTED_MIN_VAL_ACCURACY = 0.5


def get_config():
  """VGG-11 at width 16 on the generated sample."""
  config = default.get_config()
  config.data_dir = 'data/tfds'
  config.sample.enabled = True
  config.sample.num_classes = 20
  config.sample.train_per_class = 250
  config.sample.val_per_class = 50
  config.sample.test_images = 200
  config.image_size = 32
  config.model.depth = 11
  config.model.width = 16
  config.model.hidden_units = 256
  config.batch_size = 64
  config.eval_batch_size = 200
  config.num_epochs = 10
  config.early_stopping.patience = 3
  config.log_every_steps = 10
  return config
