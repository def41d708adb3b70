"""Per-device memory of one run's train step, parameters replicated vs sharded (config.sharding).

  XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu python -m jpeft.bench.memory \\
      --config=configs/vtab_lora.py --config.model.variant=L/16 --config.optim.batch_size=8

Compiles (never runs) the trainer's train step for each --param_axis_sizes on all devices, with the trainer's
layout (`jpeft.train.sharding`: batch split over all devices, parameters and optimizer moments split over the
'param' axis) and random-init weights (layout and memory do not depend on them; nothing is downloaded), and
prints XLA's per-device figures from `compiled.memory_analysis()`:
  args_MB   the step's inputs held by one device: frozen and trainable parameters, optimizer state, batch
  out_MB    its outputs (the new trainable parameters and optimizer state; donated, so they reuse args)
  temp_MB   temporaries: activations kept for the backward pass, gradients, gathered weights
  total_MB  args + out - aliased + temp: what one device needs at the step's peak
On virtual CPU devices this shows what a layout saves before an accelerator is at hand; on GPU/TPU the same
figures are what the compiler plans for each chip.
"""
import json

import jax
from absl import flags
from ml_collections import config_flags

from jpeft import cli
from jpeft.train import config_checks, model_setup, optim, sharding, steps

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (as for jpeft.main).", lock_config=True)
_SIZES = flags.DEFINE_list("param_axis_sizes", None,
                           "config.sharding.param_axis_size values to compare (each must divide the device "
                           "count). Default: 1 (replicated) and the device count (fully sharded).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per layout instead of the table.")
flags.mark_flags_as_required(["config"])


def _abstract(tree, mesh, min_shard_size: int):
  """Shape/dtype/sharding stand-ins of `tree` in the layout `sharding.shard_params` gives it."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                     sharding=sharding.param_sharding(x.shape, mesh, min_shard_size)),
                      tree)


def measure(config, setup, param_axis_size: int) -> dict:
  """Per-device bytes of the train step of `setup` with `param_axis_size` devices along 'param'."""
  mesh = sharding.make_mesh(param_axis_size)
  min_size = config.sharding.min_shard_size
  tx = optim.make_optimizer(config.optim, setup.labels)
  frozen = _abstract(setup.frozen, mesh, min_size)
  trainable = _abstract(setup.trainable, mesh, min_size)
  opt_state = _abstract(jax.eval_shape(tx.init, setup.trainable), mesh, min_size)
  batch_size, size = config.optim.batch_size, config.data.image_size
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec((sharding.DATA_AXIS, sharding.PARAM_AXIS)))
  batch = dict(image=jax.ShapeDtypeStruct((batch_size, size, size, 3), jax.numpy.float32, sharding=split),
               label=jax.ShapeDtypeStruct((batch_size,), jax.numpy.int32, sharding=split))
  whole = sharding.replicated(mesh)
  hparams = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=whole),
                         steps.hparams_from_config(config, steps_per_epoch=1))
  key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32, sharding=whole)
  step = jax.jit(steps.make_train_step(setup.model, tx), donate_argnums=(0, 1),
                 out_shardings=(sharding.shardings_of(trainable), sharding.shardings_of(opt_state), whole))
  m = step.lower(trainable, opt_state, frozen, batch, key, hparams).compile().memory_analysis()
  mb = lambda n: n / 2**20
  return dict(param_axis_size=param_axis_size, mesh=dict(mesh.shape), args_mb=mb(m.argument_size_in_bytes),
              out_mb=mb(m.output_size_in_bytes), temp_mb=mb(m.temp_size_in_bytes),
              total_mb=mb(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
                          + m.temp_size_in_bytes))


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  config.unlock()
  config.pretrained.name, config.pretrained.path = "", None  # random weights: same layout, no download
  sizes = [int(s) for s in _SIZES.value] if _SIZES.value else sorted({1, jax.device_count()})
  for size in sizes:
    config.sharding.param_axis_size = size
    config_checks.validate_config(config)  # a size that does not divide the devices: one clear error
  setup = model_setup.build(config)
  rows = [measure(config, setup, size) for size in sizes]
  if _JSON.value:
    for r in rows:
      print(json.dumps(r))
    return
  n_params = sum(v.size for v in setup.trainable.values()) + sum(v.size for v in setup.frozen.values())
  print(f"{config.model.variant} {config.method} batch {config.optim.batch_size} image {config.data.image_size} "
        f"{config.model.dtype} on {jax.device_count()}x {jax.devices()[0].device_kind}; {n_params:,} parameters; "
        f"min_shard_size {config.sharding.min_shard_size}; per device:")
  print(f"{'param_axis':>10} {'mesh':>12} {'args_MB':>9} {'out_MB':>9} {'temp_MB':>9} {'total_MB':>9}")
  for r in rows:
    mesh = f"{r['mesh']['data']}x{r['mesh']['param']}"
    print(f"{r['param_axis_size']:>10} {mesh:>12} {r['args_mb']:>9.1f} {r['out_mb']:>9.1f} {r['temp_mb']:>9.1f} "
          f"{r['total_mb']:>9.1f}")


if __name__ == "__main__":
  cli.run_program(main, "jpeft.bench.memory")
