"""Runs the study's tuning protocol for tasks x methods, many trials per compiled program.

  python -m jpeft.sweep --config=configs/vtab_lora.py --tasks=dtd,eurosat --methods=lora,ssf \\
      --workdir=runs/sweep [--grid.lr=1e-3,1e-2] [--grid.wd=1e-4] [--grid.lora.rank=1,8] \\
      [--grid.seeds=42,43] [--trial_batch=8] [--nofinal] [--config.optim.epochs=10] [--cpu_devices=2]

The grid defaults to the study's (lr {1e-3, 1e-2} x wd {1e-4, 1e-3} x each method's registered grid, seed
42); every entry is overridable as --grid.<entry>=v1,v2 (a method's entry: --grid.<method>.<field>). Any
--config.<field> override applies to every trial (epochs, batch size, data, backbone). Started again with the
same --workdir and base config, the sweep skips finished trials (`trials.jsonl`); more tasks, methods or grid
values may be added, but another base config (recorded in `sweep_config.json`) is refused, and so is a second
sweep while one runs on the workdir. On a CPU-only machine, --cpu_devices=<cores> splits the CPU into one XLA
device per core and the trial axis over them (faster for small models; see experiments/bench_sweep.py).
Launched as several processes with --config.distributed.enabled=True (as jpeft.main), the trials are split over
the devices of all processes and process 0 writes the workdir. Compiled programs are saved in --compilation_cache (as for jpeft.main): a rerun, and a task whose programs
have the shapes of an earlier task's, loads them instead of compiling.

Writes to --workdir: trials.jsonl (one row per trial and stage), sweep_config.json (the base config's
run-defining fields), summary.jsonl / summary.csv (one row per task x method: selected hyperparameters, val
and test accuracy, spread over seeds), results.md / results.csv (method x task table with group means and the
study's numbers), accuracy_vs_params.png and predictions/<task>/<method>_seed<seed>.npz (the final runs' test
logits and labels, for ensembles).
"""
import contextlib
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from jpeft import cli, workdir_lock
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import protocol, tables

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file returning an ml_collections.ConfigDict (e.g. configs/vtab_lora.py); "
    "override any field with --config.<field>=<value>.", lock_config=True)
_GRID = cli.define_config_dict_or_exit(
    "grid", grid_lib.default_grid(), "Search grid: --grid.lr=1e-3,1e-2 --grid.wd=1e-4 --grid.seeds=42,43 "
    "--grid.final_seeds=42,43 (retrain the selected setting with these seeds; default: the tuning seeds) "
    "--grid.<method>.<field>=v1,v2.", "jpeft.sweep")
_TASKS = flags.DEFINE_list("tasks", None, "Tasks to sweep (default: the config's task).")
_METHODS = flags.DEFINE_list("methods", None, "Method strings to sweep (default: the config's method).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where trials, summaries and tables are written; rerunning "
                               "with the same workdir resumes.")
_TRIAL_BATCH = flags.DEFINE_integer("trial_batch", 8, "Trials trained together in one compiled program; "
                                    "lower it if a chunk does not fit in device memory.")
_FINAL = flags.DEFINE_boolean("final", True, "Retrain each winner on train800val200 and report test accuracy.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 1, "Split the host CPU into this many XLA devices (e.g. one "
                                    "per core) and shard each chunk's trials over them; 1 keeps XLA's single "
                                    "CPU device. No effect on GPU/TPU.", lower_bound=1)
_COMPILATION_CACHE = cli.define_compilation_cache_flag()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  cli.quiet_logging_unless_asked()
  cli.set_cpu_devices(_CPU_DEVICES.value)
  config = _CONFIG.value
  cli.start_distributed(config, "jpeft.sweep")
  lead = jax.process_index() == 0
  tasks = _TASKS.value or [config.task]
  methods = _METHODS.value or [config.method]
  try:
    # One sweep per workdir: a second would train every trial again and interleave its rows with this one's.
    # (Process 0 of a multi-process sweep holds it for all: they share the workdir, only process 0 writes.)
    with (workdir_lock.hold(_WORKDIR.value, program="jpeft.sweep") if lead else contextlib.nullcontext()), \
        cli.compilation_cache(_COMPILATION_CACHE.value) as compiles:
      summaries = protocol.run_sweep(config, tasks, methods, _GRID.value, _WORKDIR.value, _TRIAL_BATCH.value,
                                     final=_FINAL.value)
      if lead:
        tables.write_all(summaries, _WORKDIR.value)
  except (grid_lib.GridError, *cli.USER_ERRORS) as e:
    print(f"jpeft.sweep: error: {e}", file=sys.stderr)
    sys.exit(1)
  for row in summaries:
    print(f"{row['task']}/{row['method']}: test {row['test_accuracy']} (std {row['test_std']}), "
          f"val {row['val_accuracy']}, selected {row['selected']}")
  print(compiles.summary())


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.sweep", ("config", "grid")))
