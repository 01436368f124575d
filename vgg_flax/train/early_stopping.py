"""Early stopping on the validation loss, decided in the host loop once an epoch."""

import dataclasses
import math


@dataclasses.dataclass
class EarlyStopping:
  """Counts epochs without improvement, as the original project did.

  An epoch improves when its loss is below `best_loss - min_delta`; that resets the count.
  Any other epoch adds one; training stops when the count reaches `patience`. The fields are
  plain numbers so the state goes into the checkpoint and a resumed run decides the same.
  """
  patience: int
  min_delta: float = 0.0
  best_loss: float = math.inf
  best_epoch: int = 0
  bad_epochs: int = 0

  def update(self, epoch: int, loss: float) -> bool:
    """Records an epoch's validation loss; returns True when it is the new best."""
    if loss < self.best_loss - self.min_delta:
      self.best_loss, self.best_epoch, self.bad_epochs = float(loss), epoch, 0
      return True
    self.bad_epochs += 1
    return False

  @property
  def should_stop(self) -> bool:
    """True once `patience` epochs in a row have not improved."""
    return self.bad_epochs >= self.patience

  def state_dict(self) -> dict:
    """The counters, JSON-friendly (infinity is stored as None)."""
    best = None if math.isinf(self.best_loss) else self.best_loss
    return {'best_loss': best, 'best_epoch': self.best_epoch, 'bad_epochs': self.bad_epochs}

  def load_state_dict(self, state: dict) -> None:
    """Restores the counters written by `state_dict`."""
    best = state['best_loss']
    self.best_loss = math.inf if best is None else float(best)
    self.best_epoch = int(state['best_epoch'])
    self.bad_epochs = int(state['bad_epochs'])
