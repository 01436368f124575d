"""The hard vote's two tie rules and the `tied_classes` column, on crafted votes."""

import numpy as np
import pytest

from configs import ensemble as ensemble_config
from input_pipeline import pipeline
from vgg_flax.workdir import config as configuration
from vgg_flax.modes import ensemble
from vgg_flax.modes import predictions as inference

# Five members (rows) voting on four images (columns):
#   image 0: 2-2-1, member 0 alone with 9; pairs 7 (members 1, 3) and 5 (members 2, 4):
#            the earliest member of a pair votes 7, the lowest tied class is 5 (rules differ);
#   image 1: 2-2-1, member 0 in the pair of 8 (with member 4), the other pair 2 (rules differ);
#   image 2: 1-1-1-1-1, all disagree: member 0's 4 or the lowest class 0 (rules differ);
#   image 3: 3-1-1, a majority of 6: no tie, both rules give 6.
VOTES = np.array([[9, 8, 4, 6],
                  [7, 2, 3, 6],
                  [5, 2, 2, 1],
                  [7, 3, 1, 6],
                  [5, 8, 0, 0]])


def test_first_member_rule():
  np.testing.assert_array_equal(ensemble.hard_vote(VOTES), [7, 8, 4, 6])
  np.testing.assert_array_equal(ensemble.hard_vote(VOTES, tie_break='first_member'),
                                [7, 8, 4, 6])


def test_lowest_class_rule():
  np.testing.assert_array_equal(ensemble.hard_vote(VOTES, tie_break='lowest_class'),
                                [5, 2, 0, 6])


def test_rules_agree_when_the_earliest_tied_class_is_also_the_lowest():
  # Image 0: 2-2-1 with pairs 1 (members 0, 1) and 2 (members 2, 4): 1 by either rule.
  votes = np.array([[1, 3], [1, 3], [2, 1], [4, 1], [2, 0]])
  for rule in ensemble.TIE_BREAKS:
    np.testing.assert_array_equal(ensemble.hard_vote(votes, tie_break=rule)[:1], [1])
  # Image 1: pairs 3 (members 0, 1) and 1 (members 2, 3): the rules part ways.
  assert ensemble.hard_vote(votes, tie_break='first_member')[1] == 3
  assert ensemble.hard_vote(votes, tie_break='lowest_class')[1] == 1


def test_tied_classes():
  assert ensemble.tied_classes(VOTES) == [[5, 7], [2, 8], [0, 1, 2, 3, 4], []]


def test_a_single_member_never_ties():
  assert ensemble.tied_classes(np.array([[3, 1]])) == [[], []]
  np.testing.assert_array_equal(ensemble.hard_vote(np.array([[3, 1]]), tie_break='lowest_class'),
                                [3, 1])


def test_unknown_tie_break():
  with pytest.raises(ValueError, match="tie_break='random' is not one of 'first_member', "
                     "'lowest_class'"):
    ensemble.hard_vote(VOTES, tie_break='random')


def test_config_tie_break_is_checked():
  config = ensemble_config.get_config()
  assert ensemble.tie_break_of(config) == 'first_member'
  config.tie_break = 'random'
  with pytest.raises(configuration.ConfigError, match="tie_break='random' is not one of"):
    ensemble.tie_break_of(config)


def split_predictions(classes: np.ndarray, num_classes: int) -> inference.SplitPredictions:
  """One member's predictions of `classes` as confident log-probabilities."""
  log_probs = np.full((len(classes), num_classes), -10.0, np.float32)
  log_probs[np.arange(len(classes)), classes] = -0.01
  names = np.array([f'test_{i}.JPEG' for i in range(len(classes))], dtype=object)
  return inference.SplitPredictions(split='test', file_names=names,
                                    labels=np.full(len(classes), -1, np.int32),
                                    log_probs=log_probs, images=np.zeros((0,), np.uint8),
                                    image_names=np.zeros((0,), object))


@pytest.mark.parametrize('rule,expected', [('first_member', [7, 8, 4, 6]),
                                           ('lowest_class', [5, 2, 0, 6])])
def test_csv_rows_follow_the_rule_and_list_the_ties(rule, expected):
  info = pipeline.DatasetInfo(num_classes=10, class_names=tuple(f'words {i}' for i in range(10)),
                              label_names=tuple(f'n{i:08d}' for i in range(10)),
                              split_sizes={'test': 4}, image_shape=(64, 64, 3))
  names = ['11', '13', '16', '16_C11', '19']
  header, rows, mode, _ = ensemble.vote_rows(
      names, [split_predictions(v, 10) for v in VOTES], info, with_labels=False,
      tie_break=rule)
  assert header == ['images', *names, 'mode_pred', 'soft_pred', 'class_pred', 'class_words',
                    'tied_classes']
  np.testing.assert_array_equal(mode, expected)
  column = {name: [row[i] for row in rows] for i, name in enumerate(header)}
  assert column['mode_pred'] == expected
  assert column['class_pred'] == [f'n{c:08d}' for c in expected]
  assert column['tied_classes'] == ['5 7', '2 8', '0 1 2 3 4', '']
  assert column['13'] == list(VOTES[1])
