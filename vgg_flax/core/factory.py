"""Builds what a run computes with: model, schedule, optimizer, shardings and jitted steps.

Training, the benchmarks and the tests build their steps here, the same way. Like
`core.steps`, this module imports JAX, Flax, optax and clu only (no TensorFlow, no input
pipeline): benchmarks on GPU hosts without TensorFlow build the exact steps training uses.

The initial train state is returned beside the compiled pieces, not kept in them: the train
step donates its state, so after the first step only the caller's newest state is alive.
"""

from __future__ import annotations  # Config annotations need no ml_collections at run time.

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable

import jax
import optax

from vgg_flax.core import models
from vgg_flax.core import sharding
from vgg_flax.core import steps

if TYPE_CHECKING:
  import ml_collections


@dataclasses.dataclass(frozen=True)
class Compiled:
  """The pieces of a run that do not change from step to step.

  Attributes:
    model: the VGG module.
    mesh: the one-axis device mesh (`data`).
    learning_rate_fn: the schedule (step -> learning rate).
    tx: the optimizer.
    state_sharding: the pytree of the train state's shardings (for jit and restoring).
    init_state: jitted `rng -> TrainState`, placed on `state_sharding`.
    train_step: jitted `(state, batch) -> (state, TrainMetrics)`; the state is donated.
    eval_step: jitted `(variables, batch) -> (log_probs, EvalMetrics)`, no test-time
      augmentation (training's validation).
  """
  model: models.VGG
  mesh: jax.sharding.Mesh
  learning_rate_fn: optax.Schedule
  tx: optax.GradientTransformation
  state_sharding: Any
  init_state: Callable
  train_step: Callable
  eval_step: Callable

  def abstract_state(self, state: steps.TrainState) -> Any:
    """Shapes, dtypes and shardings of a train state, to restore a checkpoint onto."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, self.state_sharding)


def create(config: ml_collections.ConfigDict, *, num_classes: int, steps_per_epoch: int,
           mesh: jax.sharding.Mesh | None = None,
           abstract: bool = False) -> tuple[Compiled, steps.TrainState]:
  """Builds the model, the optimizer, the initial state and the jitted steps for a config.

  Args:
    config: a config from `configs/` (`model`, `dtype`, `cpu_conv_grad`, the optimisation
      fields, `image_size`, `seed`).
    num_classes: the outputs of the model.
    steps_per_epoch: optimizer steps an epoch (the schedule's unit).
    mesh: the device mesh; default all devices.
    abstract: return the state's shapes, dtypes and shardings only (`jax.ShapeDtypeStruct`s):
      nothing is initialised or allocated (to lower and compile, e.g. the memory benchmark).

  Returns:
    The compiled pieces and the initial train state (initialised from `config.seed`, placed
    on its replicated sharding).
  """
  mesh = mesh or sharding.create_mesh()
  model = models.create_model(config.model, num_classes=num_classes, dtype=config.dtype,
                              cpu_conv_grad=config.cpu_conv_grad)
  learning_rate_fn = steps.create_learning_rate_schedule(config, steps_per_epoch)
  tx = steps.create_optimizer(config, learning_rate_fn)
  init = functools.partial(steps.create_train_state, model, tx, image_size=config.image_size)
  rng = jax.random.key(config.seed)
  replicated = sharding.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, jax.eval_shape(init, rng))
  init_state = jax.jit(init, out_shardings=state_sharding)
  compiled = Compiled(
      model=model, mesh=mesh, learning_rate_fn=learning_rate_fn, tx=tx,
      state_sharding=state_sharding, init_state=init_state,
      train_step=steps.jit_train_step(config, learning_rate_fn, state_sharding, mesh),
      eval_step=steps.jit_eval_step(model.apply, config, mesh))
  if abstract:
    return compiled, compiled.abstract_state(jax.eval_shape(init, rng))
  return compiled, init_state(rng)
