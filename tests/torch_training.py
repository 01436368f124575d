"""The PyTorch side of the parity test, run in a process of its own.

  python -m tests.torch_training --arrays=in.npz --initial=initial.pt --losses=out.npz

Reads the train and validation arrays, builds the original's VGG with the test's initial
weights, saves them (`--initial`, for `config.init_from`), trains `steps` Adam steps on the
one full batch and writes the training and validation losses (`--losses`).

A process of its own because the CUDA builds of PyTorch (every build on Python 3.12) import
triton on the first optimizer step, and that import crashes a process that already holds
jaxlib and TensorFlow with a segmentation fault. This process imports neither.
"""

from absl import app
from absl import flags
import numpy as np
import torch

from tests import torch_models

FLAGS = flags.FLAGS
flags.DEFINE_string('arrays', None, 'npz with train/val images and labels, width, hidden, '
                    'num_classes and steps.', required=True)
flags.DEFINE_string('initial', None, 'Where to save the initial state_dict.', required=True)
flags.DEFINE_string('losses', None, 'npz to write train_losses and val_losses to.',
                    required=True)


def to_torch(images: np.ndarray) -> torch.Tensor:
  """uint8 NHWC -> the original's input: NCHW in [-1, 1] (ToTensor, Normalize(0.5, 0.5))."""
  return torch.tensor(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 * 2.0 - 1.0)


def initial_model(width: int, hidden: int, num_classes: int,
                  train_images: torch.Tensor) -> torch.nn.Module:
  """The original's VGG-11 with random BatchNorms, wide conv outputs and calibrated stats."""
  torch.manual_seed(0)
  model = torch_models.randomise_batch_norms(torch_models.OriginalVGG(
      11, width=width, hidden=hidden, num_classes=num_classes))
  # A conv bias in front of BatchNorm has a zero gradient in exact arithmetic, so its Adam
  # steps (about lr x sign(rounding noise)) differ between any two implementations, and
  # evaluation sees them through the lagging running mean. Conv outputs 100x wider than
  # Kaiming's make those steps 100x smaller in normalised units, below the tolerance; the
  # training losses do not depend on them at all.
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.Conv2d):
        module.weight.mul_(100.0)
  # Running statistics of the data, so that the validation loss follows the training.
  return torch_models.calibrate_batch_norms(model, train_images)


def train(model, images, labels, val_images, val_labels, steps: int):
  """The original's loop, one full batch a step: (train losses, val losses after each)."""
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  train_losses, val_losses = [], []
  for _ in range(steps):
    model.train()
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    train_losses.append(loss.item())
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
      val_losses.append(torch.nn.functional.cross_entropy(model(val_images), val_labels).item())
  return np.array(train_losses), np.array(val_losses)


def main(argv):
  del argv
  arrays = np.load(FLAGS.arrays)
  images, labels = to_torch(arrays['train_images']), torch.tensor(arrays['train_labels']).long()
  val_images = to_torch(arrays['val_images'])
  val_labels = torch.tensor(arrays['val_labels']).long()
  model = initial_model(int(arrays['width']), int(arrays['hidden']), int(arrays['num_classes']),
                        images)
  torch.save(model.state_dict(), FLAGS.initial)
  train_losses, val_losses = train(model, images, labels, val_images, val_labels,
                                   int(arrays['steps']))
  np.savez(FLAGS.losses, train_losses=train_losses, val_losses=val_losses)


if __name__ == '__main__':
  app.run(main)
