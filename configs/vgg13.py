"""VGG-13 with BatchNorm on Tiny ImageNet, the original project's recipe.

  python main.py --config=configs/vgg13.py --workdir=runs/vgg13 \
      --config.data_source=/path/to/tiny-imagenet-200.zip

Adam at 1e-3, batch 64, up to 50 epochs with early stopping (patience 6) on the validation
loss. The original reached top-1 val accuracy 0.400 with this recipe
(at 224 px); see README.md for what this project measures.
"""

from configs import default


def get_config():
  """VGG-13, otherwise the defaults of configs/default.py."""
  return default.vgg_config(13)
