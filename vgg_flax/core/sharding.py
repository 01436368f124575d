"""One code path for 1 CPU, N devices and N processes: a one-axis mesh named `data`.

Batches are split over `data`; the train state is replicated. Under `jax.jit`, BatchNorm's
batch mean and variance are then computed over the global batch without any `pmean`.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def create_mesh(devices=None) -> jax.sharding.Mesh:
  """A mesh with the single axis `data` over `devices` (default: all, of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: the compiler propagates the batch sharding through the model (GSPMD), so
  # model code needs no sharding annotations.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the devices."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The same full copy on every device."""
  return NamedSharding(mesh, P())


def to_global_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding,
                    keys=('image', 'label', 'mask')) -> dict[str, jax.Array]:
  """Assembles this process's numpy batch into global arrays sharded over `data`.

  Only the numeric `keys` travel to the devices (file names stay on the host).
  """
  return {key: jax.make_array_from_process_local_data(sharding, local_batch[key])
          for key in keys if key in local_batch}
