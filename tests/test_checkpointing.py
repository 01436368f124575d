"""`vgg_flax.workdir.checkpoints` on its own: small pytrees, no model, no training loop."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgg_flax.workdir import checkpoints as checkpointing


def state_of(epoch: int) -> dict:
  """A small train-state-like pytree whose values say which epoch saved it."""
  return {'params': {'w': jnp.full((3, 2), float(epoch)), 'b': jnp.arange(2.0) + epoch},
          'step': jnp.asarray(10 * epoch, jnp.int32)}


def loop_of(epoch: int) -> dict:
  return {'epoch': epoch, 'history': [{'epoch': e, 'val_loss': 1.0 / e}
                                      for e in range(1, epoch + 1)]}


ABSTRACT = jax.eval_shape(lambda: state_of(0))


def assert_tree_equal(actual, expected):
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, actual),
               jax.tree.map(np.asarray, expected))


def save_epochs(workdir, epochs, max_to_keep=2):
  checkpoints = checkpointing.WorkdirCheckpoints(workdir, max_to_keep=max_to_keep)
  for epoch in epochs:
    checkpoints.save_latest(epoch, state_of(epoch), loop_of(epoch))
    checkpoints.save_best(epoch, state_of(epoch)['params'], loop_of(epoch))
  checkpoints.close()


def restore(workdir):
  checkpoints = checkpointing.WorkdirCheckpoints(workdir)
  try:
    return checkpoints.restore_latest(ABSTRACT)
  finally:
    checkpoints.close()


def test_a_fresh_workdir_has_nothing_to_restore(tmp_path):
  workdir = tmp_path / 'run'
  assert not checkpointing.has_best_checkpoint(workdir)
  with pytest.raises(FileNotFoundError, match=f'^{workdir / "best"} does not exist: train '):
    checkpointing.restore_best_variables(workdir, ABSTRACT['params'])
  assert restore(workdir) is None  # Opening the workdir makes its (empty) folders.
  assert not checkpointing.has_best_checkpoint(workdir)
  with pytest.raises(FileNotFoundError, match='best holds no finished checkpoint: train '):
    checkpointing.restore_best_variables(workdir, ABSTRACT['params'])


def test_latest_and_best_round_trip_and_keep_the_newest(tmp_path):
  save_epochs(tmp_path, [1, 2, 3])
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']
  assert sorted(os.listdir(tmp_path / 'best')) == ['2', '3']
  state, loop = restore(tmp_path)
  assert_tree_equal(state, state_of(3))
  assert loop == loop_of(3)
  assert checkpointing.has_best_checkpoint(tmp_path)
  variables, best_loop = checkpointing.restore_best_variables(tmp_path, ABSTRACT['params'])
  assert_tree_equal(variables, state_of(3)['params'])
  assert best_loop == loop_of(3)


def test_max_to_keep_sets_how_many_epochs_stay(tmp_path):
  save_epochs(tmp_path, [1, 2, 3], max_to_keep=1)
  assert os.listdir(tmp_path / 'checkpoints') == ['3']
  assert os.listdir(tmp_path / 'best') == ['3']


def test_a_damaged_newest_is_moved_aside_and_the_one_before_restores(tmp_path):
  save_epochs(tmp_path, [1, 2])
  metadata = tmp_path / 'checkpoints' / '2' / 'state' / '_METADATA'
  metadata.write_bytes(b'\xff' * 64)
  state, loop = restore(tmp_path)
  assert_tree_equal(state, state_of(1))
  assert loop['epoch'] == 1
  assert os.listdir(tmp_path / 'checkpoints') == ['1']
  assert [p.split('_2')[0] for p in os.listdir(tmp_path / 'damaged')] == ['checkpoints']
  assert os.listdir(tmp_path / 'best') == ['1']  # Later best epochs are made again on resume.


def test_no_restorable_checkpoint_is_one_line_naming_the_folder(tmp_path):
  save_epochs(tmp_path, [1, 2])
  for epoch in ('1', '2'):
    (tmp_path / 'checkpoints' / epoch / 'state' / '_METADATA').write_bytes(b'\xff' * 64)
  with pytest.raises(checkpointing.CheckpointError) as raised:
    restore(tmp_path)
  message = str(raised.value)
  assert '\n' not in message
  assert message.startswith(f'{tmp_path / "checkpoints"}: no checkpoint can be restored '
                            '(newest, epoch 2: ')
  assert message.endswith(f'to start over, train in a new --workdir (or delete {tmp_path}).')


# A restore of many arrays whose data files are gone: orbax abandons most reads at the first
# failure, and those finish later as unraisable exceptions (in a fresh process, so the hook
# it installs stays out of pytest's).
ABANDONED_READS = textwrap.dedent("""
    import gc, shutil, sys, time
    import numpy as np
    from vgg_flax.workdir import checkpoints as checkpointing

    workdir = sys.argv[1]
    # Random values: orbax keeps small or compressible arrays inside its manifest.
    rng = np.random.default_rng(0)
    state = {f'w{i}': rng.normal(size=1024).astype(np.float32) for i in range(300)}
    saver = checkpointing.WorkdirCheckpoints(workdir)
    for epoch in (1, 2):
      saver.save_latest(epoch, state, {'epoch': epoch})
    saver.close()
    for epoch in (1, 2):
      shutil.rmtree(f'{workdir}/checkpoints/{epoch}/state/ocdbt.process_0')
    checkpoints = checkpointing.WorkdirCheckpoints(workdir)
    try:
      checkpoints.restore_latest(state)
    except checkpointing.CheckpointError as error:
      print('CheckpointError:', error)
    gc.collect()
    time.sleep(1)  # The abandoned reads finish meanwhile.

    class Unrelated:
      def __del__(self):
        raise ValueError('an unrelated unraisable error')
    Unrelated()
""")


@pytest.mark.slow
def test_abandoned_reads_of_a_failed_restore_print_nothing(tmp_path):
  result = subprocess.run([sys.executable, '-c', ABANDONED_READS, str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith(f'CheckpointError: {tmp_path / "checkpoints"}: no checkpoint '
                                  'can be restored (newest, epoch 2: ')
  assert 'Event loop is closed' not in result.stderr
  assert 'exception was never retrieved' not in result.stderr  # asyncio's records of them.
  assert 'Encountered error while reading' not in result.stderr.replace(
      'cannot be restored (Exception: Encountered error while reading', '')
  # Other unraisable exceptions still reach Python's own hook, with their traceback.
  assert result.stderr.count('Traceback') == 1
  assert 'ValueError: an unrelated unraisable error' in result.stderr


def test_checkpoints_of_another_shape_are_not_called_damaged(tmp_path):
  save_epochs(tmp_path, [1])
  other = jax.eval_shape(lambda: {**state_of(0), 'params': {'w': jnp.zeros((4, 2)),
                                                             'b': jnp.zeros(2)}})
  checkpoints = checkpointing.WorkdirCheckpoints(tmp_path)
  with pytest.raises(ValueError) as raised:
    checkpoints.restore_latest(other)
  checkpoints.close()
  assert not isinstance(raised.value, checkpointing.CheckpointError)
  assert not (tmp_path / 'damaged').exists()


def test_drop_epochs_after_deletes_later_latest_and_best(tmp_path):
  save_epochs(tmp_path, [1, 2, 3], max_to_keep=3)
  checkpoints = checkpointing.WorkdirCheckpoints(tmp_path, max_to_keep=3)
  checkpoints.drop_epochs_after(1)
  checkpoints.close()
  assert os.listdir(tmp_path / 'checkpoints') == ['1']
  assert os.listdir(tmp_path / 'best') == ['1']


def test_save_best_variables_writes_a_best_checkpoint_alone(tmp_path):
  variables = state_of(5)['params']
  checkpointing.save_best_variables(tmp_path, variables, {'epoch': 0, 'converted': True})
  assert os.listdir(tmp_path / 'best') == ['0']
  assert not (tmp_path / 'checkpoints').exists()
  restored, loop = checkpointing.restore_best_variables(tmp_path, ABSTRACT['params'])
  assert_tree_equal(restored, variables)
  assert loop == {'epoch': 0, 'converted': True}
