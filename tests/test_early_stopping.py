"""Early stopping decisions for scripted validation losses."""

import math

import pytest

from vgg_flax.train.early_stopping import EarlyStopping


def run_losses(losses, patience, min_delta=0.0):
  """Feeds losses epoch by epoch; returns (last epoch run, best epoch, improved flags)."""
  stopper = EarlyStopping(patience=patience, min_delta=min_delta)
  flags = []
  for epoch, loss in enumerate(losses, start=1):
    flags.append(stopper.update(epoch, loss))
    if stopper.should_stop:
      return epoch, stopper.best_epoch, flags
  return len(losses), stopper.best_epoch, flags


def test_stops_after_patience_epochs_without_improvement():
  losses = [3.0, 2.5, 2.6, 2.7, 2.8, 1.0]
  assert run_losses(losses, patience=3) == (5, 2, [True, True, False, False, False])


def test_improvement_resets_the_count():
  losses = [3.0, 3.1, 3.2, 2.9, 3.0, 3.0, 3.0]
  last, best, _ = run_losses(losses, patience=3)
  assert (last, best) == (7, 4)


def test_equal_loss_is_not_an_improvement():
  assert run_losses([2.0, 2.0, 2.0], patience=2)[:2] == (3, 1)


def test_min_delta_ignores_small_improvements():
  losses = [2.0, 1.99, 1.98, 1.5]
  assert run_losses(losses, patience=2, min_delta=0.05)[:2] == (3, 1)
  assert run_losses(losses, patience=2, min_delta=0.0)[:2] == (4, 4)


def test_state_round_trip_continues_identically():
  stopper = EarlyStopping(patience=2)
  stopper.update(1, 2.0)
  stopper.update(2, 2.5)
  restored = EarlyStopping(patience=2)
  restored.load_state_dict(stopper.state_dict())
  assert (restored.best_loss, restored.best_epoch, restored.bad_epochs) == (2.0, 1, 1)
  assert not restored.update(3, 2.1)
  assert restored.should_stop


def test_fresh_state_serialises_infinity_as_none():
  stopper = EarlyStopping(patience=1)
  assert stopper.state_dict()['best_loss'] is None
  restored = EarlyStopping(patience=1)
  restored.load_state_dict(stopper.state_dict())
  assert math.isinf(restored.best_loss)


@pytest.mark.parametrize('patience', [1, 4])
def test_never_stops_while_improving(patience):
  losses = [5.0 - i for i in range(5)]
  assert run_losses(losses, patience=patience) == (5, 5, [True] * 5)
