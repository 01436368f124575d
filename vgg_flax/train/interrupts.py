"""SIGTERM and Ctrl-C stop training at the next step boundary, not in the middle of a write.

Inside `stop_at_step_boundary()` the first SIGTERM or SIGINT only records a request; the
loop calls `check()` after each step (train and eval) and between epochs, which raises
`Interrupted`. Checkpoint saves in flight then finish, and the workdir resumes exactly: the
interrupted epoch is replayed from the last finished one. A second signal stops at once.
"""

import contextlib
import signal
import threading
from typing import Iterator

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: list[int] = []  # The signal received, if any (a list: set from the handler).


class Interrupted(Exception):
  """The run was asked to stop by a signal; `exit_code` is the shell's 128 + signal."""

  def __init__(self, signum: int, message: str = ''):
    self.signum = signum
    self.exit_code = 128 + signum
    super().__init__(message or f'stopped by {signal.Signals(signum).name}.')


def _request_stop(signum: int, frame) -> None:
  del frame
  if _requested:  # A second signal: the user does not want to wait.
    raise KeyboardInterrupt
  _requested.append(signum)
  logging.warning('%s received: stopping at the next step boundary (send it again to stop '
                  'at once).', signal.Signals(signum).name)


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[None]:
  """Turns SIGTERM and SIGINT into a stop request while the block runs (main thread only)."""
  if threading.current_thread() is not threading.main_thread():
    yield  # Signal handlers can only be set from the main thread.
    return
  previous = {s: signal.signal(s, _request_stop) for s in SIGNALS}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    _requested.clear()


def check() -> None:
  """Raises `Interrupted` if a stop was requested; cheap enough to call after every step."""
  if _requested:
    raise Interrupted(_requested[0])
