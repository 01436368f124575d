"""`vgg_flax.workdir.abandoned_reads`: which failures count as orbax's abandoned reads.

The end-to-end check (a restore with its data files gone prints nothing more than its one
warning) is `test_checkpointing.py::test_abandoned_reads_of_a_failed_restore_print_nothing`.
"""

import logging
import os

from vgg_flax.workdir import abandoned_reads

ORBAX_FILE = os.path.join(os.sep, 'site-packages', 'orbax', 'checkpoint', 'serialization.py')
OTHER_FILE = os.path.join(os.sep, 'site-packages', 'other', 'module.py')


def code_in(filename: str, source: str) -> dict:
  """The names `source` defines, as if its file were `filename`."""
  names = {}
  exec(compile(source, filename, 'exec'), names)  # pylint: disable=exec-used
  return names


def raised(function) -> BaseException:
  try:
    function()
  except Exception as error:  # pylint: disable=broad-except
    return error
  raise AssertionError('did not raise')


def test_errors_of_orbax_reads_and_a_closed_loop_count_others_do_not():
  orbax = code_in(ORBAX_FILE, 'def _read_array_index():\n  raise ValueError("gone")\n'
                              'def save_array():\n  raise ValueError("full")\n')
  other = code_in(OTHER_FILE, 'def _read_array_index():\n  raise ValueError("gone")\n')
  assert abandoned_reads.is_abandoned_read(raised(orbax['_read_array_index']))
  assert not abandoned_reads.is_abandoned_read(raised(orbax['save_array']))  # Saves count.
  assert not abandoned_reads.is_abandoned_read(raised(other['_read_array_index']))
  assert not abandoned_reads.is_abandoned_read(None)

  import asyncio  # pylint: disable=g-import-not-at-top
  loop = asyncio.new_event_loop()
  loop.close()
  closed = raised(lambda: loop.call_soon_threadsafe(print))
  assert str(closed) == 'Event loop is closed'
  assert abandoned_reads.is_abandoned_read(closed)


def test_an_unawaited_read_coroutine_of_orbax_counts():
  orbax = code_in(ORBAX_FILE, 'async def _read_and_create_array():\n  pass\n')
  other = code_in(OTHER_FILE, 'async def _read_and_create_array():\n  pass\n')
  for names, expected in ((orbax, True), (other, False)):
    coroutine = names['_read_and_create_array']()
    assert abandoned_reads.is_abandoned_read(ValueError('x'), coroutine) is expected
    coroutine.close()


def test_asyncio_records_of_abandoned_reads_are_dropped_others_kept(monkeypatch):
  monkeypatch.setattr(abandoned_reads, '_failed_restores', [])  # No restore failed yet.
  orbax = code_in(ORBAX_FILE, 'async def async_deserialize():\n  raise ValueError("gone")\n')
  read_error = raised(lambda: orbax['async_deserialize']().send(None))
  other_error = raised(lambda: 1 / 0)
  records = [logging.LogRecord('asyncio', logging.ERROR, __file__, 1,
                               'Task exception was never retrieved', None,
                               (type(error), error, error.__traceback__))
             for error in (read_error, other_error)]
  records.append(logging.LogRecord('asyncio', logging.ERROR, __file__, 1, 'no exception', None,
                                   None))
  kept = [r for r in records if abandoned_reads._AsyncioRecords().filter(r)]  # pylint: disable=protected-access
  assert kept == records[1:]


def test_other_asyncio_errors_are_dropped_only_after_a_failed_restore(monkeypatch):
  # TensorStore sets a failed read's error on its future (never raised in Python), or
  # asyncio's wrapper task raises it from its own code.
  unraised = ValueError('FAILED_PRECONDITION: Error reading "params.w" in OCDBT database')
  wrapped = raised(lambda: 1 / 0)
  records = [logging.LogRecord('asyncio', logging.ERROR, __file__, 1,
                               'Task exception was never retrieved', None,
                               (type(error), error, error.__traceback__))
             for error in (unraised, wrapped)]
  keep = abandoned_reads._AsyncioRecords().filter  # pylint: disable=protected-access
  monkeypatch.setattr(abandoned_reads, '_failed_restores', [])
  assert all(keep(record) for record in records)
  abandoned_reads.restore_failed()
  assert not any(keep(record) for record in records)
