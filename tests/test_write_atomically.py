"""`atomic.write_atomically`: the target is the old file or the new one, nothing else.

(A full disk and temporaries of dead processes are in tests/test_faults.py.)
"""

import os

import pytest
from vgg_flax.workdir import atomic



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
