"""The part of `clu.metrics` the jitted steps use, for hosts that carry JAX alone.

`vgg_flax.metrics` imports clu when it is installed (always, for training) and this module
otherwise, so `benchmarks/gpu.sh` runs the exact training step on a fresh GPU host with only
jax, flax, optax, orbax, PyTorch and numpy. Same names, same arithmetic as clu's `Average`,
`LastValue` and `Collection` (`tests/test_benchmarks.py` compares the two).
"""

import dataclasses

import flax
import jax.numpy as jnp


@flax.struct.dataclass
class Average:
  """Mean of per-example values; masked-out examples count neither in total nor count."""
  total: jnp.ndarray
  count: jnp.ndarray

  @classmethod
  def from_model_output(cls, values: jnp.ndarray, mask: jnp.ndarray | None = None, **_):
    values = jnp.asarray(values)
    if mask is None:
      mask = jnp.ones(values.shape, bool)
    mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)),
                            values.shape)
    return cls(total=jnp.where(mask, values, 0).sum(), count=mask.sum().astype(jnp.int32))

  @classmethod
  def from_output(cls, name: str):
    """A metric of the model output called `name` (mask forwarded if per-example)."""
    return _derived(cls, lambda **output: output[name])

  @classmethod
  def from_fun(cls, fun):
    """A metric of `fun(**model_output)` (mask forwarded if per-example)."""
    return _derived(cls, fun)

  def merge(self, other):
    return type(self)(total=self.total + other.total, count=self.count + other.count)

  def compute(self) -> jnp.ndarray:
    return self.total / self.count


@flax.struct.dataclass
class LastValue(Average):
  """The most recent step's mean value (merging keeps the newer one)."""

  def merge(self, other):
    return other


def _derived(base, fun):
  """A subclass of `base` whose `from_model_output` takes the whole model output."""

  @flax.struct.dataclass
  class Derived(base):

    @classmethod
    def from_model_output(cls, **output):
      values = jnp.asarray(fun(**output))
      mask = output.get('mask')
      if mask is not None and (values.shape or (0,))[0] != mask.shape[0]:
        mask = None  # A per-batch value (e.g. the learning rate): the mask does not apply.
      return base.from_model_output.__func__(cls, values, mask=mask)

  return Derived


class Collection:
  """A dataclass of metrics built, merged and computed together (subclass it, as in clu)."""

  @classmethod
  def single_from_model_output(cls, **output):
    return cls(**{field.name: field.type.from_model_output(**output)
                  for field in dataclasses.fields(cls)})

  def merge(self, other):
    return type(self)(**{field.name: getattr(self, field.name).merge(getattr(other, field.name))
                         for field in dataclasses.fields(self)})

  def compute(self) -> dict[str, jnp.ndarray]:
    return {field.name: getattr(self, field.name).compute() for field in dataclasses.fields(self)}
