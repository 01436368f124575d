"""SIGTERM and Ctrl-C: a clean stop at a step boundary in training, at once elsewhere.

`install()` (main.py, once JAX is imported) sets the handlers for the rest of the process.
Outside training (data preparation, compilation, restoring, evaluation) nothing is left
half-written by stopping, so the first signal raises `Interrupted` at once. Inside
`stop_at_step_boundary()` (the training epochs) the first signal only records a request; the
loop calls `check()` after each step and between epochs, which raises `Interrupted`, and
checkpoint saves in flight finish, so the workdir resumes exactly. A second signal, anywhere,
ends the process at once with one line and the shell's status (128 + the signal).
"""

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: list[int] = []  # The signal received, if any (a list: set from the handler).
_in_training: list[bool] = []  # Non-empty inside `stop_at_step_boundary()`.


class Interrupted(BaseException):
  """The run was asked to stop by a signal; `exit_code` is the shell's 128 + signal.

  A BaseException, like KeyboardInterrupt: raised from a signal handler anywhere, it must
  not be taken for an error of the code it interrupts (`except Exception`).
  """

  def __init__(self, signum: int, message: str = ''):
    self.signum = signum
    self.exit_code = 128 + signum
    super().__init__(message or f'stopped by {signal.Signals(signum).name}.')


def _on_signal(signum: int, frame) -> None:
  del frame
  name = signal.Signals(signum).name
  if _requested:
    # The user does not want to wait: no cleanup (an unfinished checkpoint save is ignored
    # by the next run; see docs/design.md), one line, the shell's status.
    print(f'error: stopped at once by a second {name}.', file=sys.stderr, flush=True)
    os._exit(128 + signum)  # pylint: disable=protected-access
  _requested.append(signum)
  if not _in_training:
    raise Interrupted(signum)
  logging.warning('%s received: stopping at the next step boundary (send it again to stop '
                  'at once).', name)


def install() -> None:
  """Handles SIGTERM and SIGINT as the module docstring says, for the rest of the process."""
  for signum in SIGNALS:
    signal.signal(signum, _on_signal)


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[None]:
  """Turns the first SIGTERM or SIGINT into a stop request while the block runs.

  Installs the handlers for the block when `install()` has not (a library caller of
  `train_and_evaluate`), and restores the previous ones after it.
  """
  if threading.current_thread() is not threading.main_thread():
    yield  # Signal handlers can only be set from the main thread.
    return
  installed = signal.getsignal(signal.SIGTERM) is _on_signal
  previous = {} if installed else {s: signal.signal(s, _on_signal) for s in SIGNALS}
  _in_training.append(True)
  try:
    yield
  finally:
    _in_training.pop()
    for s, handler in previous.items():
      signal.signal(s, handler)
    if not installed:
      _requested.clear()


def check() -> None:
  """Raises `Interrupted` if a stop was requested; cheap enough to call after every step."""
  if _requested:
    raise Interrupted(_requested[0])
