"""The train state and the jitted steps: everything that runs on the accelerator.

It also runs the eval step over a split's batches (`evaluate_batches`): training's
validation and every mode after it call that one function, so they report the same numbers.
No TensorFlow here: benchmarks on GPU hosts use the exact steps that training uses.
"""

from __future__ import annotations  # Config annotations need no ml_collections at run time.

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from vgg_flax.core import metrics as vgg_metrics
from vgg_flax.core import preprocess as vgg_preprocess
from vgg_flax.core import sharding

if TYPE_CHECKING:
  import ml_collections


class TrainState(train_state.TrainState):
  """Params, optimizer state and step (from flax), BatchNorm statistics and the RNG.

  `rng` holds raw key data (uint32), so checkpoints store a plain array.
  """
  batch_stats: Any
  rng: jax.Array


def create_learning_rate_schedule(config: ml_collections.ConfigDict,
                                  steps_per_epoch: int) -> optax.Schedule:
  """Constant, or linear warm-up then cosine decay to zero over `num_epochs`."""
  if config.schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  total_steps = max(config.num_epochs * steps_per_epoch, warmup_steps + 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=0.0)


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam (the original), AdamW (decoupled weight decay) or SGD with (Nesterov) momentum.

  For 'adam' and 'sgd' a non-zero `weight_decay` is an L2 term added to the gradient, as
  PyTorch's `weight_decay` argument does.
  """
  if config.optimizer == 'adamw':
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  if config.optimizer == 'adam':
    base = optax.adam(schedule)
  else:
    base = optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov)
  if config.weight_decay:
    return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
  return base


def create_train_state(model, tx: optax.GradientTransformation, rng: jax.Array,
                       image_size: int) -> TrainState:
  """Initialises the model's variables and the optimizer state."""
  init_rng, state_rng = jax.random.split(rng)
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = model.init(init_rng, images, train=False)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables.get('batch_stats', {}),
                           rng=jax.random.key_data(state_rng))


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def model_variables(state: TrainState) -> dict:
  """The variables `model.apply` takes: params and, with BatchNorm, its statistics."""
  variables = {'params': state.params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  return variables


def infer_logits(apply_fn: Callable, variables: dict, images: jax.Array, *, image_size: int,
                 dtype: Any) -> jax.Array:
  """Deterministic logits for uint8 images: resize, normalise, apply in eval mode."""
  inputs = vgg_preprocess.preprocess(images, image_size=image_size, dtype=dtype)
  return apply_fn(variables, inputs, train=False)


TTA_MODES = ('none', 'flip')


def infer_log_probs(apply_fn: Callable, variables: dict, images: jax.Array, *, image_size: int,
                    dtype: Any, tta: str = 'none') -> jax.Array:
  """Deterministic float32 log-probabilities for uint8 images, with test-time augmentation.

  Args:
    apply_fn: the model's `apply`.
    variables: its params (and BatchNorm statistics).
    images: uint8 (N, H, W, C) batch.
    image_size: the side the model sees.
    dtype: computation dtype.
    tta: 'none', or 'flip': the mean of the softmax of each image and of its mirror image.

  Returns:
    (N, num_classes) log of the (mean) softmax.
  """
  if tta not in TTA_MODES:
    raise ValueError(f'tta={tta!r} is not one of {", ".join(map(repr, TTA_MODES))}.')
  views = [images] if tta == 'none' else [images, images[:, :, ::-1]]
  log_probs = [jax.nn.log_softmax(infer_logits(apply_fn, variables, view, image_size=image_size,
                                               dtype=dtype).astype(jnp.float32), axis=-1)
               for view in views]
  if len(log_probs) == 1:
    return log_probs[0]
  # log(mean(p)) computed from the log-probabilities, so tiny probabilities do not underflow.
  return jax.nn.logsumexp(jnp.stack(log_probs), axis=0) - jnp.log(float(len(views)))


def train_step(state: TrainState, batch: dict, *, config: ml_collections.ConfigDict,
               learning_rate_fn: optax.Schedule) -> tuple[TrainState, Any]:
  """One optimizer step on a global batch of uint8 images, augmented on the device.

  With `config.grad_accum_steps` k > 1 the batch is split into k micro-batches (micro-batch i
  holds examples i, i+k, ...) whose gradients are summed in a `lax.scan`: the step's update is
  that of the whole batch, with the activation memory of one micro-batch. BatchNorm
  normalises each micro-batch with its own statistics (as any accumulation must), and its
  running averages take the mean of the k micro-batches' updates: one update a step, as with
  one big batch. Without BatchNorm the step equals the big batch's up to float rounding.
  """
  step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  augment_rng, dropout_rng = jax.random.split(step_rng)
  # The whole batch is augmented at once, so its random draws do not depend on k.
  images = vgg_preprocess.preprocess(
      batch['image'], image_size=config.image_size, rng=augment_rng,
      flip=config.augment.flip, crop_padding=config.augment.crop_padding,
      dtype=jnp.dtype(config.dtype))

  def loss_fn(params, images, labels, rng, weight):
    variables = model_variables(state.replace(params=params))
    logits, updates = state.apply_fn(variables, images, train=True, mutable=['batch_stats'],
                                     rngs={'dropout': rng})
    losses = cross_entropy(logits, labels, config.label_smoothing)
    return losses.mean() * weight, (losses, logits, updates)

  grad_fn = jax.grad(loss_fn, has_aux=True)
  accum_steps = config.grad_accum_steps
  if accum_steps == 1:
    grads, (losses, logits, updates) = grad_fn(state.params, images, batch['label'],
                                               dropout_rng, 1.0)
  else:
    grads, (losses, logits, updates) = accumulate_gradients(
        grad_fn, state.params, images, batch['label'], dropout_rng, accum_steps)
  new_state = state.apply_gradients(grads=grads,
                                    batch_stats=updates.get('batch_stats', state.batch_stats))
  step_metrics = vgg_metrics.TrainMetrics.single_from_model_output(
      loss=losses, logits=logits, labels=batch['label'],
      learning_rate=learning_rate_fn(state.step))
  return new_state, step_metrics


def split_micro_batches(x: jax.Array, num: int) -> jax.Array:
  """(B, ...) -> (num, B/num, ...); micro-batch i holds examples i, i+num, ...

  Strided rather than contiguous, so the B/num axis keeps the batch's sharding over devices.
  """
  return jnp.swapaxes(x.reshape((x.shape[0] // num, num) + x.shape[1:]), 0, 1)


def join_micro_batches(x: jax.Array) -> jax.Array:
  """The inverse of `split_micro_batches`: (num, B/num, ...) -> (B, ...) in batch order."""
  return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def accumulate_gradients(grad_fn: Callable, params: Any, images: jax.Array,
                         labels: jax.Array, rng: jax.Array, num: int) -> tuple[Any, tuple]:
  """Sums `grad_fn`'s gradients over `num` micro-batches in a `lax.scan`.

  Args:
    grad_fn: `(params, images, labels, rng, weight) -> (grads, (losses, logits, updates))`,
      the gradient of `weight` times the micro-batch's mean loss.
    params: the parameters to differentiate.
    images: the global batch, preprocessed.
    labels: its labels.
    rng: the step's dropout key (folded with the micro-batch index).
    num: the number of micro-batches; divides the batch.

  Returns:
    The gradient of the whole batch's mean loss, and the per-example losses and logits in
    batch order with the mean of the micro-batches' BatchNorm updates.
  """

  def micro_step(grad_sum, micro):
    micro_images, micro_labels, index = micro
    grads, aux = grad_fn(params, micro_images, micro_labels, jax.random.fold_in(rng, index),
                         1.0 / num)
    return jax.tree.map(jnp.add, grad_sum, grads), aux

  micro_batches = (split_micro_batches(images, num), split_micro_batches(labels, num),
                   jnp.arange(num))
  grads, (losses, logits, updates) = jax.lax.scan(
      micro_step, jax.tree.map(jnp.zeros_like, params), micro_batches)
  updates = jax.tree.map(lambda update: update.mean(axis=0), updates)
  return grads, (join_micro_batches(losses), join_micro_batches(logits), updates)


def eval_step(variables: dict, batch: dict, *, apply_fn: Callable, image_size: int, dtype: Any,
              tta: str = 'none') -> tuple[jax.Array, Any]:
  """Log-probabilities and metrics of one padded evaluation batch; the mask leaves padding out.

  The one evaluation step: training's validation (`tta='none'`, its log-probabilities stay on
  the devices), `--mode=evaluate`, predict and the ensemble all run it, so their loss, top-1
  and top-5 accuracy are the same numbers by construction.

  Args:
    variables: the model's params (and BatchNorm statistics).
    batch: uint8 `image`, int `label` (-1 where unlabelled or padding) and bool `mask`.
    apply_fn: the model's `apply`.
    image_size: the side the model sees.
    dtype: computation dtype.
    tta: test-time augmentation, see `infer_log_probs`.

  Returns:
    (N, num_classes) float32 log-probabilities and the batch's `EvalMetrics`.
  """
  log_probs = infer_log_probs(apply_fn, variables, batch['image'], image_size=image_size,
                              dtype=dtype, tta=tta)
  # Padding and unlabelled examples carry label -1; clip it to a valid class (the mask
  # removes padding; an unlabelled split's metrics mean nothing and are not reported).
  labels = jnp.maximum(batch['label'], 0)
  loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  metrics = vgg_metrics.EvalMetrics.single_from_model_output(
      loss=loss, logits=log_probs, labels=labels, mask=batch['mask'])
  return log_probs, metrics


def jit_train_step(config, learning_rate_fn, state_sharding, mesh) -> Callable:
  """`train_step` compiled for the mesh, the state donated (updated in place)."""
  step = functools.partial(train_step, config=config, learning_rate_fn=learning_rate_fn)
  return jax.jit(step, in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0)


def jit_eval_step(apply_fn: Callable, config, mesh, *, tta: str = 'none') -> Callable:
  """`eval_step` compiled for the mesh: `(variables, batch) -> (log_probs, metrics)`.

  The variables are replicated, the batch and the log-probabilities sharded over `data`, the
  metrics replicated.
  """
  step = functools.partial(eval_step, apply_fn=apply_fn, image_size=config.image_size,
                           dtype=jnp.dtype(config.dtype), tta=tta)
  batch_sharding = sharding.data_sharding(mesh)
  return jax.jit(step, in_shardings=(sharding.replicated(mesh), batch_sharding),
                 out_shardings=(batch_sharding, sharding.replicated(mesh)))


def evaluate_batches(eval_step: Callable, variables: Any, batches: Iterable[dict], mesh, *,
                     on_batch: Callable[[dict, jax.Array], None] | None = None) -> Any:
  """Runs the jitted eval step over padded batches and merges their metrics on the devices.

  Args:
    eval_step: from `jit_eval_step`.
    variables: the model's (replicated) params and BatchNorm statistics.
    batches: this process's numpy batches (`image`, `label`, `mask`, ...).
    mesh: the device mesh.
    on_batch: called with each numpy batch and its (global, device) log-probabilities.

  Returns:
    The merged `EvalMetrics`, or None when there was no batch.
  """
  batch_sharding = sharding.data_sharding(mesh)
  merged = None
  for batch in batches:
    log_probs, batch_metrics = eval_step(variables, sharding.to_global_batch(batch,
                                                                             batch_sharding))
    merged = batch_metrics if merged is None else merged.merge(batch_metrics)
    if on_batch is not None:
      on_batch(batch, log_probs)
  return merged


def computed(merged: Any) -> dict[str, float]:
  """Merged metrics as python floats (one transfer to the host)."""
  return {k: float(v) for k, v in merged.compute().items()}
