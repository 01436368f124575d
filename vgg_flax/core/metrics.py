"""clu metric collections computed inside the jitted steps.

Per-example values are passed with a `mask`, so padded evaluation examples never count.
"""

import flax
import jax
import jax.numpy as jnp

from clu import metrics


def top_k_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 for each example whose label is among its `k` highest logits, else 0.0."""
  k = min(k, logits.shape[-1])
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  # Rank = number of classes with a strictly higher logit; ties count in the label's favour.
  rank = jnp.sum(logits > label_logit, axis=-1)
  return (rank < k).astype(jnp.float32)


def _top1(logits, labels, **_):
  return top_k_correct(logits, labels, 1)


def _top5(logits, labels, **_):
  return top_k_correct(logits, labels, 5)


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  """Loss, top-1 and top-5 accuracy, averaged over the unmasked examples."""
  loss: metrics.Average.from_output('loss')
  accuracy: metrics.Average.from_fun(_top1)
  top5_accuracy: metrics.Average.from_fun(_top5)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  """The evaluation metrics plus the learning rate of the last step."""
  loss: metrics.Average.from_output('loss')
  accuracy: metrics.Average.from_fun(_top1)
  top5_accuracy: metrics.Average.from_fun(_top5)
  learning_rate: metrics.LastValue.from_output('learning_rate')
