"""Data parallelism over all devices: a 1-D mesh 'data', batches split along it, parameters replicated.

Every process builds the same global batch (same seed, same data) and contributes the rows its devices own,
so the code is the same on one CPU, one host with many accelerators, or many hosts after
`jax.distributed.initialize`.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  """A mesh over all devices of all processes, one axis named 'data'."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole by every device of `mesh`."""
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` whole on every device of `mesh`.

  Every process must pass the same values (as every process builds the same model and optimizer state).
  """
  if jax.process_count() > 1:
    # device_put of a jax.Array onto other processes' devices builds arrays with malformed shards (jax 0.10:
    # `addressable_shards` fails, so a checkpoint cannot be written); from host memory each process places
    # its own copies.
    tree = jax.device_get(tree)
  return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global numpy batch {name: [B, ...]} -> global arrays split along B over the mesh.

  B must be divisible by the number of devices (checked when the config is validated).
  """
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
          for k, v in batch.items()}
