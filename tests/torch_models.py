"""PyTorch VGGs in the two layouts `init_from` reads, written out for the tests.

`OriginalVGG` is the original project's module tree (`layers.<i>.conv`, `layers.<i>.bNorm`,
`fc_layers.0/2/4`) and semantics: conv 3x3 (bias) -> BatchNorm2d -> ReLU, a 2x2/2 max pool
after each stage, AdaptiveAvgPool2d(2) in its code, three Linear layers. `TorchvisionVGG`
has torchvision's names (`features.<n>`, `classifier.0/3/6`, dropout between).
"""

import torch
from torch import nn

# Convs per stage and channel multipliers, written out here rather than taken from vgg_flax.
PLANS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
MULTIPLIERS = (1, 2, 4, 8, 8)


class Block(nn.Module):
  """The original's conv block."""

  def __init__(self, cin, cout):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 3, padding=1)
    self.bNorm = nn.BatchNorm2d(cout)  # pylint: disable=invalid-name
    self.relu = nn.ReLU()

  def forward(self, x):
    return self.relu(self.bNorm(self.conv(x)))


class OriginalVGG(nn.Module):
  """The original project's VGG (its code's average pool by default)."""

  def __init__(self, depth, *, width, hidden, num_classes, pool='avg'):
    super().__init__()
    layers, cin = [], 3
    for convs, multiplier in zip(PLANS[depth], MULTIPLIERS):
      for _ in range(convs):
        layers.append(Block(cin, width * multiplier))
        cin = width * multiplier
      layers.append(nn.MaxPool2d(2, 2))
    layers.append(nn.AdaptiveAvgPool2d(2) if pool == 'avg' else nn.AdaptiveMaxPool2d(2))
    self.layers = nn.Sequential(*layers)
    self.fc_layers = nn.Sequential(
        nn.Linear(cin * 2 * 2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.fc_layers(torch.flatten(self.layers(x), 1))


class TorchvisionVGG(nn.Module):
  """torchvision's `vgg*_bn` layout: features, avgpool to `pool`, classifier with dropout."""

  def __init__(self, depth, *, width, hidden, num_classes, pool=7, pool_type='avg'):
    super().__init__()
    features, cin = [], 3
    for convs, multiplier in zip(PLANS[depth], MULTIPLIERS):
      for _ in range(convs):
        features += [nn.Conv2d(cin, width * multiplier, 3, padding=1),
                     nn.BatchNorm2d(width * multiplier), nn.ReLU()]
        cin = width * multiplier
      features.append(nn.MaxPool2d(2, 2))
    self.features = nn.Sequential(*features)
    # torchvision's name `avgpool`, whatever the pool: the layout is what is under test.
    self.avgpool = (nn.AdaptiveAvgPool2d if pool_type == 'avg' else nn.AdaptiveMaxPool2d)(pool)
    self.classifier = nn.Sequential(
        nn.Linear(cin * pool * pool, hidden), nn.ReLU(), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomise_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
  """Gives every BatchNorm a non-trivial scale, bias and running statistics, so a test
  notices any of them lost or swapped on the way."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        shape = module.weight.shape
        module.weight.copy_(0.5 + torch.rand(shape, generator=generator))
        module.bias.copy_(0.1 * torch.randn(shape, generator=generator))
        module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
  return model


def calibrate_batch_norms(model: nn.Module, images: torch.Tensor) -> nn.Module:
  """Sets every BatchNorm's running statistics to those of `images` (one training forward
  with momentum 1), so evaluation sees what training sees, as in a trained model."""
  batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
  for module in batch_norms:
    module.momentum = 1.0
  model.train()
  with torch.no_grad():
    model(images)
  for module in batch_norms:
    module.momentum = 0.1
    module.num_batches_tracked.zero_()
  return model
