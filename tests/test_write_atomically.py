"""`atomic.write_atomically`: the target is the old file or the new one, nothing else; and
`disk.errno_of` reads the OS error of each library that raises one, as installed.

(A full disk and temporaries of dead processes are in tests/test_faults.py.)
"""

import errno
import os

import numpy as np
import pytest

from vgg_flax.workdir import atomic
from vgg_flax.workdir import disk


class WriterFailed(Exception):
  pass


def failing_writer(tmp):
  tmp.write_text('half of the new')
  raise WriterFailed('the writer broke')


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
  target = tmp_path / 'history.csv'
  target.write_text('old\n')
  with pytest.raises(WriterFailed, match='the writer broke'):
    atomic.write_atomically(target, failing_writer)
  assert os.listdir(tmp_path) == ['history.csv']
  assert target.read_text() == 'old\n'


def test_a_failing_first_write_leaves_nothing(tmp_path):
  target = tmp_path / 'out' / 'report.json'
  with pytest.raises(WriterFailed):
    atomic.write_atomically(target, failing_writer)
  assert os.listdir(tmp_path / 'out') == []  # The folder is made; no file, no temporary.


def test_an_interrupt_while_writing_cleans_up_too(tmp_path):
  target = tmp_path / 'plot.png'

  def interrupted(tmp):
    tmp.write_bytes(b'partial')
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    atomic.write_atomically(target, interrupted)
  assert os.listdir(tmp_path) == []


def test_a_writer_that_writes_nothing_is_an_error_and_leaves_the_old_file(tmp_path):
  target = tmp_path / 'config.json'
  target.write_text('{}')
  with pytest.raises(FileNotFoundError):
    atomic.write_atomically(target, lambda tmp: None)
  assert os.listdir(tmp_path) == ['config.json']
  assert target.read_text() == '{}'


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
  target = tmp_path / 'history.csv'
  target.write_text('old\n')
  atomic.write_atomically(target, lambda tmp: tmp.write_text('new\n'))
  assert os.listdir(tmp_path) == ['history.csv']
  assert target.read_text() == 'new\n'


@pytest.fixture
def full_disk(tmpfs):
  """A 64 KiB tmpfs, too small for the writes below."""
  return tmpfs('64k')


def test_the_errno_of_a_tensorstore_write_to_a_full_disk(full_disk):
  """TensorStore (orbax's storage) raises a ValueError; its status carries the errno."""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  spec = {'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(full_disk / 'a')}}
  with pytest.raises(ValueError) as raised:
    array = ts.open(spec, create=True, dtype=ts.float32, shape=[1 << 18]).result()
    # Random values: zarr compresses, and 1 MiB of noise stays about 1 MiB.
    array.write(np.random.default_rng(0).random(1 << 18, np.float32)).result()
  assert disk.errno_of(raised.value) == errno.ENOSPC
  assert disk.is_storage_failure(raised.value, full_disk)


def test_the_errno_of_a_tensorflow_write_to_a_full_disk(full_disk):
  """TensorFlow raises an OpError whose message ends with the OS's text for the errno."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with pytest.raises(tf.errors.OpError) as raised:
    tf.io.write_file(str(full_disk / 'x'), tf.constant(b'x' * (1 << 20)))
  assert disk.errno_of(raised.value) == errno.ENOSPC
  assert disk.is_storage_failure(raised.value, full_disk)


def test_errors_without_an_errno_are_not_disk_failures():
  assert disk.errno_of(ValueError('shape mismatch')) is None
  assert disk.errno_of(KeyError('x')) is None
  assert not disk.is_storage_failure(ValueError('No space left on device, says a message'))
