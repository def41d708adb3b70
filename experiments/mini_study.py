"""The offline mini study: every PEFT method on every Mini VTAB task with a small grid, through the sweep engine.

  python experiments/mini_study.py --workdir=runs/mini_study [--tasks=mini_count,mini_digits]
      [--methods=lora,ssf] [--epochs=10] [--trial_batch=8|auto] [--grid.lr=1e-3,1e-2] [--grid.lora.rank=8]
      [--scratch_methods=lora,full] [--compilation_cache=~/.cache/jpeft/xla] [--backbone=candidate.npz]
      [--grid.final_seeds=42] [--grid.schedule=halving]

Base config: the demo's (`jpeft.config_base.demo_config`, what configs/demo.py runs: the shipped `mini/8`
backbone pre-trained on Mini VTAB's two upstream tasks, 32x32 images, no network needed). Protocol as the study's
(tune on train800, select by val200 at the last epoch, retrain on train800val200, test), with `MINI_GRID`:
lr {1e-3, 1e-2} x wd {1e-4} x one or two values of each method's own grid, tuned with seed 42, the
selected setting retrained with seeds 42 and 43 (`--grid.final_seeds=42` for one). Mini VTAB is a stand-in
for the code path, not the benchmark: its numbers say nothing about VTAB-1K. --grid.schedule=halving tunes by
successive halving (docs/how-to/sweep.md; its own --workdir). Resumable like any sweep (rerun with the same
--workdir and --epochs); the random-init rows are a sweep of their own in <workdir>/random_init.

Writes to --workdir: trials.jsonl, sweep_config.json, summary.jsonl / summary.csv, results.md / results.csv
(method x task with group means, the study's VTAB-1K numbers beside them for orientation) and
accuracy_vs_params.png.
"""
import os
import sys

from absl import app, flags

from jpeft import cli, peft
from jpeft.data import tasks as tasks_lib
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import fit, protocol, tables
from mini_setup import base_config, mini_grid


_GRID = cli.define_config_dict_or_exit("grid", mini_grid(), "Search grid; override as --grid.lr=1e-3 or "
                                      "--grid.<method>.<field>=v1,v2.", "mini_study")
_TASKS = flags.DEFINE_list("tasks", None, "Mini VTAB tasks (default: all registered 'mini_*' tasks).")
_METHODS = flags.DEFINE_list("methods", None, "Methods (default: every registered method).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/mini_study", "Output and resume directory.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Training epochs of every trial (warmup: 1 epoch).")
_TRIAL_BATCH = fit.define_trial_batch_flag(8, "Trials trained together per compiled program")
_SCRATCH = flags.DEFINE_list("scratch_methods", ["lora", "full"],
                             "Methods also run from random initialisation (rows '<method> (random init)'), to "
                             "show how much of the accuracy the pre-trained backbone carries.")
_BACKBONE = flags.DEFINE_string("backbone", None, "A mini/8 backbone .npz to fine-tune instead of the shipped one "
                                 "(a candidate from experiments/pretrain_mini.py).")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()


def main(argv) -> None:
  del argv
  cli.quiet_logging_unless_asked()
  config = base_config(_EPOCHS.value, _BACKBONE.value)
  mini = [t for t in tasks_lib.list_tasks() if tables.task_group(t) and t.startswith("mini_")]
  task_names = _TASKS.value or mini
  methods = _METHODS.value or sorted(peft.registry())
  scratch = config.copy_and_resolve_references()
  scratch.pretrained.name = scratch.pretrained.path = ""
  scratch_workdir = os.path.join(_WORKDIR.value, "random_init")  # its own workdir: another base config
  try:
    # Each sweep takes its workdir's locks itself (a run on the workdir refuses it; other sweep processes share
    # it pair by pair).
    with cli.compilation_cache(_COMPILATION_CACHE.value) as compiles:
      summaries = protocol.run_sweep(config, task_names, methods, _GRID.value, _WORKDIR.value, _TRIAL_BATCH.value)
      if _SCRATCH.value:
        from_scratch = protocol.run_sweep(scratch, task_names, _SCRATCH.value, _GRID.value, scratch_workdir,
                                          _TRIAL_BATCH.value)
        summaries += [dict(row, method=f"{row['method']} (random init)") for row in from_scratch]
      paths = tables.write_all(summaries, _WORKDIR.value)
  except (grid_lib.GridError, *cli.USER_ERRORS) as e:
    print(f"mini_study: error: {e}", file=sys.stderr)
    sys.exit(1)
  with open(paths["results.md"]) as f:
    print(f.read())
  print("written:", ", ".join(paths.values()))
  print(compiles.summary())


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "mini_study", ("grid",)))
