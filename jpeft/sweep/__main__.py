"""Runs the study's tuning protocol for tasks x methods, many trials per compiled program.

  python -m jpeft.sweep --config=configs/vtab_lora.py --tasks=dtd,eurosat --methods=lora,ssf \\
      --workdir=runs/sweep [--grid.lr=1e-3,1e-2] [--grid.wd=1e-4] [--grid.lora.rank=1,8] \\
      [--grid.seeds=42,43] [--trial_batch=8|auto] [--nofinal] [--config.optim.epochs=10] [--cpu_devices=2]
      [--shard=K/N | --shard=any] [--grid.schedule=halving [--grid.halving_eta=2] [--grid.halving_rungs=2,5]]
  python -m jpeft.sweep --workdir=runs/sweep --report

The grid defaults to the study's (lr {1e-3, 1e-2} x wd {1e-4, 1e-3} x each method's registered grid, seed 42);
every entry is overridable as --grid.<entry>=v1,v2 (a method's entry: --grid.<method>.<field>).
--grid.schedule=halving tunes by successive halving (jpeft.sweep.halving): settings are cut to the best 1/eta at
each rung (epochs), survivors continue on the full run's schedule; the default 'full' is the study's protocol.
With --grid.pad_shapes=true, trials of a method that differ only in a shape it pads exactly (LoRA's rank, ...)
share one compiled program at the grid's largest value (default: one program per shape, faster on a CPU beyond a
few epochs; docs/concepts/sweep-trial-axis.md). Any
--config.<field> override applies to every trial (epochs, batch size, data, backbone). Started again with the same
--workdir and base config, the sweep skips finished trials (`trials.jsonl`); more tasks, methods or grid values
may be added, but another base config (recorded in `sweep_config.json`) is refused, unless no trial finished under
the recorded one. Several processes may sweep one workdir at once (a job array on a shared file system,
docs/how-to/cluster.md): each (task, method) pair is trained by the process holding its lock, a pair another
process holds is left to it, and a pair a killed process left unfinished is resumed by the next process that
reaches it. --shard=K/N takes pairs K, K+N, ... (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
SLURM_ARRAY_TASK_COUNT when set, else every pair); --shard=any every pair. --report trains nothing: it writes the
tables, plot and prediction analysis of the finished pairs and names every other pair with its state (exit 0 when
every pair has a result, 2 otherwise). --trial_batch=auto trains as many trials per program as fit in the device's
memory, per shape group (XLA's memory analysis of the train step at one and two trials, extrapolated, against 85%
of the device's memory limit, on a CPU of the host's available memory; one line prints the choice and why).
On a CPU-only machine, --cpu_devices=<cores> splits the CPU into one XLA
device per core and the trial axis over them (faster for small models; see experiments/bench_sweep.py). Launched
as several processes with --config.distributed.enabled=True (as jpeft.main), the trials are split over the devices
of all processes and process 0 writes the workdir (and takes the pair locks for all). Compiled programs are saved
in --compilation_cache (as for jpeft.main): a rerun, and a task whose programs have the shapes of an earlier
task's, loads them instead of compiling.

Exits 1 with one line per pair whose every trial diverged (no finite trial to select), after writing the rest.

Writes to --workdir: trials.jsonl (one row per trial and stage), sweep_config.json (the base config's run-defining
fields), sweep_plan.json and pairs/ (the pairs, grid and locks: `jpeft.sweep.pairs`), summary.jsonl / summary.csv
(one row per task x method: selected hyperparameters, val and test accuracy, spread over seeds), results.md /
results.csv (method x task table with group means and the study's numbers), accuracy_vs_params.png and
predictions/<task>/<method>_seed<seed>.npz (the final runs' test logits and labels, for ensembles).

Ctrl-C (SIGINT) or SIGTERM stops the sweep between two steps with one line saying what is kept and exits
130 / 143: finished trials are in trials.jsonl, the chunk in training is trained again by the same command.
"""
import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from jpeft import cli, interrupts
from jpeft.sweep import fit
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import pairs, protocol, report, trial_log

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file returning an ml_collections.ConfigDict (e.g. configs/vtab_lora.py); "
    "override any field with --config.<field>=<value>.", lock_config=True)
_GRID = cli.define_config_dict_or_exit(
    "grid", grid_lib.default_grid(), "Search grid: --grid.lr=1e-3,1e-2 --grid.wd=1e-4 --grid.seeds=42,43 "
    "--grid.final_seeds=42,43 (retrain the selected setting with these seeds; default: the tuning seeds) "
    "--grid.schedule=halving (successive halving of the tune stage; default full) --grid.halving_eta=2 "
    "--grid.halving_rungs=2,5 (epochs at which settings are cut; default geometric) "
    "--grid.pad_shapes=true (pad LoRA ranks etc. to the largest: one program per method instead of per shape) "
    "--grid.<method>.<field>=v1,v2.", "jpeft.sweep")
_TASKS = flags.DEFINE_list("tasks", None, "Tasks to sweep (default: the config's task).")
_METHODS = flags.DEFINE_list("methods", None, "Method strings to sweep (default: the config's method).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where trials, summaries and tables are written; rerunning "
                               "with the same workdir resumes.")
_TRIAL_BATCH = fit.define_trial_batch_flag(8, "Trials trained together in one compiled program (lower it if a "
                                           "chunk does not fit in device memory)")
_FINAL = flags.DEFINE_boolean("final", True, "Retrain each winner on train800val200 and report test accuracy.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 1, "Split the host CPU into this many XLA devices (e.g. one "
                                    "per core) and shard each chunk's trials over them; 1 keeps XLA's single "
                                    "CPU device. No effect on GPU/TPU.", lower_bound=1)
_SHARD = flags.DEFINE_string("shard", None, "K/N: this process takes the sweep's (task, method) pairs K, K+N, "
                             "K+2N, ... (0 <= K < N); 'any': every pair no other process holds. Default: "
                             "from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set, else every pair.")
_REPORT = flags.DEFINE_boolean("report", False, "Train nothing: write the tables, plot and prediction analysis of "
                               "the workdir's finished pairs and name every other pair with its state.")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()
flags.mark_flags_as_required(["workdir"])


def _report(workdir: str) -> None:
  try:
    entries = report.write(workdir)
  except cli.USER_ERRORS as e:
    print(f"jpeft.sweep: error: {e}", file=sys.stderr)
    sys.exit(1)
  sys.exit(report.status(entries))


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  cli.quiet_logging_unless_asked()
  if _REPORT.value:
    _report(_WORKDIR.value)
  config = _CONFIG.value
  if config is None:
    print("jpeft.sweep: error: --config is required to sweep (e.g. --config=configs/vtab_lora.py); "
          "--report alone needs only --workdir.", file=sys.stderr)
    sys.exit(1)
  cli.set_cpu_devices(_CPU_DEVICES.value)
  cli.start_distributed(config, "jpeft.sweep")
  lead = jax.process_index() == 0
  tasks = _TASKS.value or [config.task]
  methods = _METHODS.value or [config.method]
  try:
    shard = pairs.parse_shard(_SHARD.value)
    if shard.source != "default":
      print(f"shard {shard} (from {shard.source})")
    with cli.compilation_cache(_COMPILATION_CACHE.value) as compiles, interrupts.raised():
      summaries = protocol.run_sweep(config, tasks, methods, _GRID.value, _WORKDIR.value, _TRIAL_BATCH.value,
                                     final=_FINAL.value, shard=shard)
      # The tables of every finished pair of the workdir, this process's and the others'.
      entries = report.write(_WORKDIR.value, analyse=False, log=lambda _: None) if lead else []
  except (grid_lib.GridError, *cli.USER_ERRORS) as e:
    print(f"jpeft.sweep: error: {e}", file=sys.stderr)
    sys.exit(1)
  except interrupts.Interrupted as e:  # Ctrl-C or SIGTERM: what is kept, exit 130 / 143
    print(f"jpeft.sweep: {interrupts.sweep_message(e, os.path.join(_WORKDIR.value, trial_log.TRIALS_FILE))}",
          file=sys.stderr)
    sys.exit(e.exit_code)
  diverged = [row for row in summaries if row["selected"] is None]
  for row in summaries:
    if row["selected"] is not None:
      print(f"{row['task']}/{row['method']}: test {row['test_accuracy']} (std {row['test_std']}), "
            f"val {row['val_accuracy']}, selected {row['selected']}")
  unfinished = sum(e["summary"] is None for e in entries)
  if unfinished:
    print(f"{unfinished} of {len(entries)} pairs of the sweep have no result yet (run elsewhere, or left by a "
          f"killed job): python -m jpeft.sweep --workdir={_WORKDIR.value} --report names them.")
  print(compiles.summary())
  for row in diverged:
    print(f"jpeft.sweep: error: {row['task']}/{row['method']} has no finite trial: all {row['num_trials']} tune "
          "trials diverged (non-finite loss), so nothing was selected and no test accuracy exists. Run the sweep "
          "again with lower --grid.lr values (the workdir keeps what finished).",
          file=sys.stderr)
  if diverged:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.sweep", ("config", "grid")))
