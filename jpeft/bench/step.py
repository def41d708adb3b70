"""Benchmark of one run's train and eval steps: compile time, steady-state images/s, memory, FLOPs per image.

  python -m jpeft.bench.step --config=configs/vtab_lora.py --config.model.variant=B/16

Uses the config's model, method, batch size, image size and dtype, random weights (speed does not depend on
them, and no checkpoint is downloaded) and a synthetic batch, on all devices with the trainer's sharding
(config.sharding; `jpeft.bench.memory` compares the layouts' memory).
Printed per step function:
  compile_s        lowering + XLA compilation
  images_per_s     global batch / median step time over --steps timed steps (after --warmup steps)
  peak_mem_mb      the device's peak bytes in use when it reports them (GPU/TPU); otherwise (CPU) XLA's
                   estimate for the step: arguments + outputs + temporaries
  gflops_per_image XLA's cost-analysis FLOP count of the step divided by the global batch
"""
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jpeft import cli
from jpeft.train import config_checks, evaluation, model_setup, optim, sharding, steps

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (as for jpeft.main).", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per step function.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
flags.mark_flags_as_required(["config"])


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returns one dict per device
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def _peak_mb(compiled) -> float:
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def _measure(name: str, fn, args: tuple, batch_size: int, carry=None, **jit_kwargs) -> dict:
  """Compiles fn(*args), then times it; `carry(out, args)` feeds outputs back (donated train state)."""
  start = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=(0, 1) if carry else (), **jit_kwargs).lower(*args).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(_WARMUP.value + _STEPS.value):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    if i >= _WARMUP.value:
      times.append(time.perf_counter() - start)
    if carry:
      args = carry(out, args)
  return dict(step=name, compile_s=compile_s, images_per_s=batch_size / statistics.median(times),
              peak_mem_mb=_peak_mb(compiled), gflops_per_image=_flops(compiled) / batch_size / 1e9)


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  config.unlock()
  config.pretrained.name, config.pretrained.path = "", None  # random weights: same speed, no download
  config_checks.validate_config(config)
  setup = model_setup.build(config)
  mesh = sharding.make_mesh(config.sharding.param_axis_size)
  batch_size, size = config.optim.batch_size, config.data.image_size
  rng = np.random.default_rng(0)
  batch = sharding.shard_batch({"image": rng.uniform(0, 1, (batch_size, size, size, 3)).astype(np.float32),
                                "label": rng.integers(0, setup.task.num_classes, batch_size).astype(np.int32)},
                               mesh)
  tx = optim.make_optimizer(config.optim, setup.labels)
  hparams = sharding.replicate(steps.hparams_from_config(config, steps_per_epoch=1), mesh)
  frozen, trainable, opt_state = evaluation.place_state(config, setup, tx, mesh)
  key = jax.random.PRNGKey(0)

  # eval first: the train step donates (consumes) the trainable parameters it is given.
  rows = [
      _measure("eval", steps.make_eval_step(setup.model), (trainable, frozen, batch, hparams), batch_size),
      _measure("train", steps.make_train_step(setup.model, tx), (trainable, opt_state, frozen, batch, key, hparams),
               batch_size, carry=lambda out, args: (out[0], out[1], *args[2:]),
               # the trainer's: the fed-back state keeps its layout
               out_shardings=(sharding.shardings_of(trainable), sharding.shardings_of(opt_state),
                              sharding.replicated(mesh))),
  ]
  print(f"{config.model.variant} {config.method} batch {batch_size} image {size} {config.model.dtype} on "
        f"{jax.device_count()}x {jax.devices()[0].device_kind}; trainable "
        f"{sum(v.size for v in setup.trainable.values()):,} of "
        f"{sum(v.size for v in setup.trainable.values()) + sum(v.size for v in setup.frozen.values()):,}")
  print(f"{'step':<6} {'compile_s':>10} {'images/s':>10} {'peak_mem_MB':>12} {'GFLOPs/image':>13}")
  for r in rows:
    print(f"{r['step']:<6} {r['compile_s']:>10.2f} {r['images_per_s']:>10.1f} {r['peak_mem_mb']:>12.1f} "
          f"{r['gflops_per_image']:>13.3f}")


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.bench.step"))
