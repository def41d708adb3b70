"""Measuring a run's compiled train and eval steps: compile time, images/s, memory, FLOPs (for jpeft.bench CLIs).

Row fields:
  compile_s        lowering + XLA compilation
  step_s           median seconds per step over the timed steps (after the warmup steps)
  images_per_s     global batch / step_s
  peak_mem_mb      the device's peak bytes in use when it reports them (GPU/TPU: the process's peak so far);
                   otherwise (CPU) XLA's estimate for the step: arguments + outputs + temporaries
  program_mem_mb   XLA's estimate for this step's program alone (arguments + outputs + temporaries - donated)
  gflops_per_image XLA's FLOP count of the lowered step (multiply-add = 2) divided by the global batch
"""
import statistics
import time
from typing import Optional

import jax
import numpy as np

from jpeft.train import config_checks, evaluation, model_setup, optim, sharding
from jpeft.train import steps as steps_lib


def _flops(lowered) -> float:
  """FLOPs of the lowered (not yet compiled) program: what the step computes, the same on every backend.

  A compiled program's own cost analysis is no measure on GPU, where matmuls become cuBLAS custom calls that it
  does not count (it reported 4-16 TFLOP/s for ViT-B/16 steps running at over 100 on an H200).
  """
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax returns one dict per device
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def peak_mb(compiled) -> float:
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def program_mb(compiled) -> float:
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes) / 2**20


def _measure(name: str, fn, args: tuple, batch_size: int, steps: int, warmup: int, carry=None,
             **jit_kwargs) -> dict:
  """Compiles fn(*args), then times it; `carry(out, args)` feeds outputs back (donated train state)."""
  start = time.perf_counter()
  lowered = jax.jit(fn, donate_argnums=(0, 1) if carry else (), **jit_kwargs).lower(*args)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    if i >= warmup:
      times.append(time.perf_counter() - start)
    if carry:
      args = carry(out, args)
  step_s = statistics.median(times)
  return dict(step=name, compile_s=compile_s, step_s=step_s, images_per_s=batch_size / step_s,
              peak_mem_mb=peak_mb(compiled), program_mem_mb=program_mb(compiled),
              gflops_per_image=_flops(lowered) / batch_size / 1e9)


def prepare(config, devices=None) -> dict:
  """Builds `config`'s model, optimizer state and a synthetic batch on every local device (or on `devices`).

  Returns dict(eval=(fn, args), train=(fn, args, carry), train_jit=<jit kwargs>, batch_size, summary, trainable,
  total): the step functions with their arguments, ready for `_measure` or `TrainLoop`, in the trainer's layout
  (`config.sharding`).
  """
  config = config.copy_and_resolve_references()
  config.pretrained.name, config.pretrained.path = "", None  # random weights: same speed, no download
  config_checks.validate_config(config)
  setup = model_setup.build(config)
  mesh = sharding.make_mesh(config.sharding.param_axis_size, devices)
  batch_size, size = config.optim.batch_size, config.data.image_size
  rng = np.random.default_rng(0)
  batch = sharding.shard_batch({"image": rng.uniform(0, 1, (batch_size, size, size, 3)).astype(np.float32),
                                "label": rng.integers(0, setup.task.num_classes, batch_size).astype(np.int32)},
                               mesh)
  tx = optim.make_optimizer(config.optim, setup.labels)
  hparams = sharding.replicate(steps_lib.hparams_from_config(config, steps_per_epoch=1), mesh)
  frozen, trainable, opt_state = evaluation.place_state(config, setup, tx, mesh)
  num_trainable = sum(v.size for v in setup.trainable.values())
  total = num_trainable + sum(v.size for v in setup.frozen.values())
  return dict(
      eval=(steps_lib.make_eval_step(setup.model), (trainable, frozen, batch, hparams)),
      train=(steps_lib.make_train_step(setup.model, tx),
             (trainable, opt_state, frozen, batch, jax.random.PRNGKey(0), hparams),
             lambda out, args: (out[0], out[1], *args[2:])),
      # the trainer's: the fed-back state keeps its layout
      train_jit=dict(out_shardings=(sharding.shardings_of(trainable), sharding.shardings_of(opt_state),
                                    sharding.replicated(mesh))),
      batch_size=batch_size, trainable=num_trainable, total=total,
      summary=(f"{config.model.variant} {config.method} batch {batch_size} image {size} {config.model.dtype} "
               f"on {mesh.size}x {jax.devices()[0].device_kind}; trainable {num_trainable:,} of {total:,}"))


class TrainLoop:
  """The compiled train step of `prepare(config, devices)`, run a few steps at a time (to interleave with another
  side); `compiler_options`: XLA options for its `jax.jit` (benchmarks comparing XLA settings in one process)."""

  def __init__(self, config, devices=None, compiler_options: Optional[dict] = None):
    prepared = prepare(config, devices)
    fn, self._args, self._carry = prepared["train"]
    self.batch_size = prepared["batch_size"]
    self.trainable, self.total, self.summary = prepared["trainable"], prepared["total"], prepared["summary"]
    start = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=(0, 1), compiler_options=compiler_options,
                      **prepared["train_jit"]).lower(*self._args)
    self.compiled = lowered.compile()
    self.compile_s = time.perf_counter() - start
    self.gflops_per_image = _flops(lowered) / self.batch_size / 1e9

  def run(self, steps: int) -> list[float]:
    """Runs `steps` train steps; returns the seconds of each (blocking on each result)."""
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      out = jax.block_until_ready(self.compiled(*self._args))
      times.append(time.perf_counter() - start)
      self._args = self._carry(out, self._args)
    return times


def measure_config(config, steps: int = 20, warmup: int = 3) -> dict:
  """Times `config`'s eval and train steps on random weights and a synthetic batch.

  Returns dict(summary=<one line naming model, method, batch, dtype, devices, trainable count>,
  trainable=<int>, total=<int>, rows=[eval row, train row]) with the row fields of the module docstring.
  """
  prepared = prepare(config)
  batch_size = prepared["batch_size"]
  # eval first: the train step donates (consumes) the trainable parameters it is given.
  rows = [_measure("eval", *prepared["eval"], batch_size, steps, warmup),
          _measure("train", *prepared["train"][:2], batch_size, steps, warmup, carry=prepared["train"][2],
                   **prepared["train_jit"])]
  return dict(summary=prepared["summary"], trainable=prepared["trainable"], total=prepared["total"], rows=rows)
