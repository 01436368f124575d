"""SIGTERM and Ctrl-C: a clean stop at a step boundary in training, at once elsewhere.

`install()` (main.py, once JAX is imported) sets the handlers for the rest of the process.
Outside training (data preparation, compilation, restoring, evaluation) nothing is left
half-written by stopping, so the first signal raises `Interrupted` at once. Inside
`stop_at_step_boundary()` (the training epochs) the first signal only records a request; the
loop calls `check()` after each step and between epochs, which raises `Interrupted`, and
checkpoint saves in flight finish, so the workdir resumes exactly. A second signal, anywhere,
ends the process at once with one line and the shell's status (128 + the signal).

A first signal that arrives during an import (TensorFlow's takes seconds, and is made at its
first use) is raised once the import is done: an exception raised while a native module
initialises aborts the process (pybind11 calls `std::terminate`).
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
# How often a signal that arrived during an import looks again whether the import is done.
_RETRY_SECONDS = 0.05


class Interrupted(BaseException):
  """The run was asked to stop by a signal; `exit_code` is the shell's 128 + signal.

  A BaseException, like KeyboardInterrupt: raised from a signal handler anywhere, it must
  not be taken for an error of the code it interrupts (`except Exception`).
  """

  def __init__(self, signum: int, message: str = ''):
    self.signum = signum
    self.exit_code = 128 + signum
    super().__init__(message or f'stopped by {signal.Signals(signum).name}.')


def _importing(frame) -> bool:
  """Whether `frame` runs inside an import, where a native module may be initialising."""
  while frame is not None:
    if frame.f_code.co_filename.startswith('<frozen importlib._bootstrap'):
      return True
    frame = frame.f_back
  return False


def _raise_when_safe(signum: int, frame) -> None:
  """Raises `Interrupted` now, or, inside an import, a moment after it is done."""
  if _importing(frame):
    signal.signal(signal.SIGALRM, _on_retry)
    signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)
    return
  raise Interrupted(signum)


def _on_retry(signum: int, frame) -> None:
  del signum
  _raise_when_safe(_requested[0], frame)


def _on_signal(signum: int, frame) -> None:
  name = signal.Signals(signum).name
  if _requested:
    # The user does not want to wait: no cleanup (an unfinished checkpoint save is ignored
    # by the next run; see docs/design.md), one line, the shell's status.
    print(f'error: stopped at once by a second {name}.', file=sys.stderr, flush=True)
    os._exit(128 + signum)  # pylint: disable=protected-access
  _requested.append(signum)
  if not _in_training:
    _raise_when_safe(signum, frame)
    return
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
