"""Data parallelism over all devices, optionally with parameters sharded FSDP-style over a 'param' axis.

The mesh has two axes, 'data' x 'param' (`config.sharding.param_axis_size` devices along 'param'; 1, the
default, is pure data parallelism with every parameter replicated). Batches are split over all devices (both
axes), so each device computes on batch / device_count examples whatever the layout. With param_axis_size
P > 1, every parameter array (frozen backbone, trainable weights, and with the trainable ones their optimizer
moments) of at least `min_shard_size` elements is split into P slices along one dimension, so each device holds
1/P of it; XLA (GSPMD) all-gathers a weight where a layer needs it whole and reduce-scatters its gradient.
Small arrays (biases, norms, LoRA factors) stay replicated: gathering them would cost more latency than the
memory they take.

Every process builds the same global batch (same seed, same data) and the same initial parameters and
contributes the pieces its devices own, so the code is the same on one CPU, one host with many accelerators,
or many hosts after `jax.distributed.initialize`.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
PARAM_AXIS = "param"


def make_mesh(param_axis_size: int = 1, devices=None) -> Mesh:
  """A mesh over all devices of all processes (or `devices`, for benchmarks comparing device counts):
  device count / param_axis_size along 'data' x param_axis_size along 'param' (which must divide the device
  count; checked when the config is validated)."""
  count = len(devices) if devices is not None else jax.device_count()
  return jax.make_mesh((count // param_axis_size, param_axis_size), (DATA_AXIS, PARAM_AXIS),
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole by every device of `mesh`."""
  return NamedSharding(mesh, P())


def param_sharding(shape: tuple[int, ...], mesh: Mesh, min_shard_size: int) -> NamedSharding:
  """Where a parameter (or optimizer moment) of `shape` lives: split over 'param' along its largest dimension
  that the axis divides (the first of equal ones) if it has at least `min_shard_size` elements, else
  replicated. A 'param' axis of size 1 replicates everything."""
  size = mesh.shape[PARAM_AXIS]
  dims = [d for d in range(len(shape)) if shape[d] % size == 0]
  if size == 1 or not dims or int(np.prod(shape)) < min_shard_size:
    return replicated(mesh)
  dim = max(dims, key=lambda d: (shape[d], -d))
  return NamedSharding(mesh, P(*[PARAM_AXIS if d == dim else None for d in range(len(shape))]))


def _put(tree, shardings):
  if jax.process_count() > 1:
    # device_put of a jax.Array onto other processes' devices builds arrays with malformed shards (jax 0.10:
    # `addressable_shards` fails, so a checkpoint cannot be written); from host memory each process places
    # its own pieces.
    tree = jax.device_get(tree)
  return jax.device_put(tree, shardings)


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` whole on every device of `mesh`.

  Every process must pass the same values (as every process builds the same model and optimizer state).
  """
  return _put(tree, replicated(mesh))


def shard_params(tree, mesh: Mesh, min_shard_size: int):
  """Places every leaf of `tree` (parameters or optimizer state) by `param_sharding`; same values on every
  process, as for `replicate`."""
  return _put(tree, jax.tree.map(lambda x: param_sharding(np.shape(x), mesh, min_shard_size), tree))


def shardings_of(tree):
  """The sharding of every leaf of a tree of placed arrays (for a jitted step's out_shardings)."""
  return jax.tree.map(lambda x: x.sharding, tree)


def to_host(tree):
  """Whole numpy copies of (possibly sharded) arrays on every process. A collective: all processes call it."""
  return multihost_utils.process_allgather(tree, tiled=True)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global numpy batch {name: [B, ...]} -> global arrays split along B over all devices of the mesh.

  B must be divisible by the number of devices (checked when the config is validated).
  """
  sharding = NamedSharding(mesh, P((DATA_AXIS, PARAM_AXIS)))
  return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
          for k, v in batch.items()}
