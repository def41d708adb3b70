"""Benchmark of one run's train and eval steps: compile time, steady-state images/s, memory, FLOPs per image.

  python -m jpeft.bench.step --config=configs/vtab_lora.py --config.model.variant=B/16

Uses the config's model, method, batch size, image size and dtype, random weights (speed does not depend on
them, and no checkpoint is downloaded) and a synthetic batch, on all devices with the trainer's sharding
(config.sharding; `jpeft.bench.memory` compares the layouts' memory).
Printed per step function (see jpeft/bench/measure.py for each field): compile_s, images/s, peak_mem_MB,
GFLOPs/image. For model FLOPs utilisation over several methods and dtypes in one command, `jpeft.bench.mfu`.
"""
from absl import flags
from ml_collections import config_flags

from jpeft import cli
from jpeft.bench import measure

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (as for jpeft.main).", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per step function.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  result = measure.measure_config(config, steps=_STEPS.value, warmup=_WARMUP.value)
  print(result["summary"])
  print(f"{'step':<6} {'compile_s':>10} {'images/s':>10} {'peak_mem_MB':>12} {'GFLOPs/image':>13}")
  for r in result["rows"]:
    print(f"{r['step']:<6} {r['compile_s']:>10.2f} {r['images_per_s']:>10.1f} {r['peak_mem_mb']:>12.1f} "
          f"{r['gflops_per_image']:>13.3f}")


if __name__ == "__main__":
  cli.run_program(main, "jpeft.bench.step")
