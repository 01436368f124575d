"""The original project's VGG in PyTorch, and timing helpers for its train and eval steps.

The layer plan is the original's (see `vgg_flax.models.STAGE_PLANS`): stages of
conv 3x3 (bias) -> BatchNorm -> ReLU, a 2x2/2 max pool after each stage, an adaptive max pool
to 2x2, then Linear(2*2*8w -> 4096) -> ReLU -> Linear(4096 -> 4096) -> ReLU -> Linear(-> 200).
One train step is the original's: Adam, cross-entropy, forward + backward + update.

`SETTINGS` are the CPU settings a PyTorch user would try: plain fp32, channels_last, and bf16
autocast (on channels_last tensors). The benchmark reports each and compares against the best.
"""

import dataclasses
import time

import torch
from torch import nn

# Convolutions per stage and channel multipliers, as the original (and `vgg_flax.models`).
STAGE_PLANS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
               19: (2, 2, 4, 4, 4)}
STAGE_MULTIPLIERS = (1, 2, 4, 8, 8)


@dataclasses.dataclass(frozen=True)
class Setting:
  """How a PyTorch model and its inputs are run."""
  name: str
  channels_last: bool
  autocast_bf16: bool


SETTINGS = {
    'torch_fp32': Setting('torch_fp32', channels_last=False, autocast_bf16=False),
    'torch_channels_last': Setting('torch_channels_last', channels_last=True,
                                   autocast_bf16=False),
    'torch_bf16': Setting('torch_bf16', channels_last=True, autocast_bf16=True),
}


def build_vgg(depth: int, *, width: int = 64, hidden_units: int = 4096,
              num_classes: int = 200) -> nn.Sequential:
  """The original's VGG with BatchNorm (adaptive max pool to 2x2 before the head)."""
  layers, in_channels = [], 3
  for convs, multiplier in zip(STAGE_PLANS[depth], STAGE_MULTIPLIERS):
    out_channels = width * multiplier
    for _ in range(convs):
      layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1),
                 nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
      in_channels = out_channels
    layers.append(nn.MaxPool2d(2, 2))
  layers += [nn.AdaptiveMaxPool2d(2), nn.Flatten(),
             nn.Linear(in_channels * 4, hidden_units), nn.ReLU(inplace=True),
             nn.Linear(hidden_units, hidden_units), nn.ReLU(inplace=True),
             nn.Linear(hidden_units, num_classes)]
  return nn.Sequential(*layers)


def default_device() -> torch.device:
  """CUDA when present (the GPU script), else the CPU."""
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


class TorchBench:
  """A model, its optimizer and fixed random batches for one setting, ready to time."""

  def __init__(self, setting: Setting, *, depth: int, batch_size: int, eval_batch_size: int,
               image_size: int, width: int = 64, hidden_units: int = 4096,
               num_classes: int = 200, device: torch.device | None = None, seed: int = 0):
    torch.manual_seed(seed)
    self.setting = setting
    self.device = device or default_device()
    if self.device.type == 'cuda':
      torch.backends.cudnn.benchmark = True  # Fixed shapes: let cuDNN pick its fastest.
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    self.model = build_vgg(depth, width=width, hidden_units=hidden_units,
                           num_classes=num_classes).to(self.device, memory_format=fmt)
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    self.images = self._images(batch_size, image_size, fmt)
    self.labels = torch.randint(0, num_classes, (batch_size,), device=self.device)
    self.eval_images = self._images(eval_batch_size, image_size, fmt)

  def _images(self, batch_size, image_size, fmt):
    images = torch.rand(batch_size, 3, image_size, image_size, device=self.device) * 2 - 1
    return images.contiguous(memory_format=fmt)

  def _autocast(self):
    return torch.autocast(self.device.type, dtype=torch.bfloat16,
                          enabled=self.setting.autocast_bf16)

  def train_step(self) -> None:
    """Forward, cross-entropy, backward and one Adam update."""
    self.model.train()
    self.optimizer.zero_grad(set_to_none=True)
    with self._autocast():
      loss = nn.functional.cross_entropy(self.model(self.images), self.labels)
    loss.backward()
    self.optimizer.step()

  @torch.inference_mode()
  def eval_step(self) -> None:
    """Logits of one evaluation batch (BatchNorm with running statistics)."""
    self.model.eval()
    with self._autocast():
      self.model(self.eval_images)

  def sync(self) -> None:
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)

  def time_train(self, steps: int) -> float:
    """Seconds for `steps` train steps."""
    return self._time(self.train_step, steps)

  def time_eval(self, steps: int) -> float:
    """Seconds for `steps` evaluation batches."""
    return self._time(self.eval_step, steps)

  def _time(self, fn, steps: int) -> float:
    self.sync()
    start = time.perf_counter()
    for _ in range(steps):
      fn()
    self.sync()
    return time.perf_counter() - start
