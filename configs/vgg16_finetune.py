"""VGG-16-BN fine-tuned from torchvision's ImageNet weights, at Tiny ImageNet's 64 px.

  python main.py --config=configs/vgg16_finetune.py --workdir=runs/vgg16_finetune \
      --config.init_from=/path/to/vgg16_bn-6c64b313.pth \
      --config.data_source=/path/to/tiny-imagenet-200.zip

`vgg16_bn-6c64b313.pth` is torchvision's `VGG16_BN_Weights.IMAGENET1K_V1` file (a plain
state_dict, read with `weights_only=True`). The network is torchvision's: 13 conv layers of
64-512 channels with BatchNorm, an adaptive *average* pool to 7x7 (at 64 px the last feature
map is 2x2, so each of its cells fills a 3-4 cell block of the 7x7 grid: torchvision's own
behaviour on small images), two 4096-wide dense layers with dropout 0.5, and a new 200-class
head ("head re-initialised: 1000 -> 200 classes" in the log). SGD with Nesterov momentum at a
small learning rate (0.01, batch 128), weight decay 5e-4, one warm-up epoch then cosine decay
over 15 epochs, random crop (4 px) and flip; the schedule is the stopping rule.

What is measured: tests/test_init_from.py checks that this config's model has exactly the
variable shapes of torchvision's VGG-16-BN (1000 classes), and that a torchvision-layout
state_dict loads into this recipe (at a tiny width) and trains with a new head.
What is not: the accuracy this reaches, nor the learning rate and epochs chosen (plausible
values for fine-tuning with SGD, not tuned). It has not been run here: the machines that
built the project have no internet for torchvision's weights or the dataset. Expect it to
beat training from scratch (configs/vgg16_sgd.py) in fewer epochs; this is not yet shown.
Unlike torchvision, the images are normalised to
[-1, 1] (the original project's mean 0.5 / std 0.5), not with ImageNet's mean and std; each
conv is followed by BatchNorm, which renormalises its input's scale in training, but the
first epoch starts from slightly off statistics.
"""

from configs import default


def get_config():
  """VGG-16-BN from torchvision's ImageNet weights, SGD with a short cosine schedule."""
  config = default.get_config()
  config.init_from = 'vgg16_bn-6c64b313.pth'  # torchvision's file; give its path.
  config.init_head = True
  config.image_size = 64
  config.model.depth = 16
  config.model.width = 64
  config.model.hidden_units = 4096
  config.model.pool_size = (7, 7)
  config.model.pool_type = 'avg'
  config.model.dropout_rate = 0.5
  config.augment.crop_padding = 4
  config.batch_size = 128
  config.num_epochs = 15
  config.optimizer = 'sgd'
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 5e-4
  config.schedule = 'cosine'
  config.warmup_epochs = 1
  config.early_stopping.patience = 15
  return config
