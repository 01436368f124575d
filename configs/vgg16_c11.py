"""VGG-16 configuration C (1x1 convs) on Tiny ImageNet, the original project's recipe.

  python main.py --config=configs/vgg16_c11.py --workdir=runs/vgg16_c11 \
      --config.data_source=/path/to/tiny-imagenet-200.zip

The last conv of stages 3, 4 and 5 is a plain 1x1 conv (the original padded these, which
grew each feature map by 2 px; this project uses the paper's unpadded 1x1). The original
reached top-1 val accuracy 0.385 with this recipe.
"""

from configs import default


def get_config():
  """VGG-16 with 1x1 convs, otherwise the defaults of configs/default.py."""
  return default.vgg_config(16, conv1x1=True)
