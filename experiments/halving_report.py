"""Successive halving against the full protocol (issue 31 item 5): the setting each selects and the trial-epochs
each spends, for tasks x methods of the mini study and for a larger grid where halving has trials to cut.

  python experiments/halving_report.py --full_workdir=runs/mini_study --workdir=runs/halving_report \\
      --out=experiments/results/halving_mini [--backbone=<the full workdir's>] [--parts=mini,large] \\
      [--tasks=mini_digits] [--methods=adapter,lora] \\
      [--large_tasks=mini_digits,mini_count] [--large_methods=adapter] [--large_epochs=5]

Part 1 (mini): `--full_workdir` is a full-protocol mini study (experiments/mini_study.py, read only); for each of
its pairs with a result (restricted by --tasks / --methods) the halving tune stage runs here on the same grid
and base config, without the final retrain (`final=False`). Part 2 (large): the full protocol and halving, both
run here, on lr x wd x two values of the method's scale (by default 4 x 1 x 2 = 8 settings a pair, 5 epochs, to
fit a shared CPU). For each pair: the setting each
schedule selects, the full protocol's val200 of both (the gap where they differ; val200 has 200 images, so its
noise is about +-3 points), and the tune stage's trial-epochs (halving's as a fraction of full's). Writes
halving.json and halving.md to --out; the sweeps' workdirs stay in --workdir (rerunning resumes them).
"""
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from jpeft import cli, config_base
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import halving as halving_lib
from jpeft.sweep import pairs, protocol, trial_log
from mini_setup import base_config, mini_grid

_FULL = flags.DEFINE_string("full_workdir", None, "A full-protocol mini study's workdir (read only).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/halving_report", "Where this report's sweeps train (resumable).")
_OUT = flags.DEFINE_string("out", "experiments/results/halving_mini", "Where halving.json and halving.md go.")
_TASKS = flags.DEFINE_list("tasks", None, "Part 1: tasks of --full_workdir (default: those with results).")
_METHODS = flags.DEFINE_list("methods", None, "Part 1: methods of --full_workdir (default: those with results).")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs of every trial (the mini study's).")
_BACKBONE = flags.DEFINE_string("backbone", None, "The mini/8 backbone .npz the full workdir was made with, when "
                                 "not this checkout's shipped one (sweep_config.json names it).")
_ETA = flags.DEFINE_integer("eta", 2, "--grid.halving_eta of the halving sweeps.")
_TRIAL_BATCH = flags.DEFINE_integer("trial_batch", 16, "Trials trained together per compiled program.")
_PARTS = flags.DEFINE_list("parts", ["mini", "large"], "Which parts to run and report (a part already run "
                           "resumes without training, so run parts apart and then both to write the report).")
_LARGE_TASKS = flags.DEFINE_list("large_tasks", ["mini_digits", "mini_count"], "Part 2's tasks.")
_LARGE_METHODS = flags.DEFINE_list("large_methods", ["adapter"], "Part 2's methods (each with a scale).")
_LARGE_LR = flags.DEFINE_list("large_lr", ["1e-3", "3e-3", "1e-2", "3e-2"], "Part 2's learning rates.")
_LARGE_WD = flags.DEFINE_list("large_wd", ["1e-4"], "Part 2's weight decays.")
_LARGE_EPOCHS = flags.DEFINE_integer("large_epochs", 5, "Part 2's epochs (fewer than the mini study's, for CPU).")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()
flags.mark_flags_as_required(["full_workdir"])

LARGE_SCALES = {"adapter": (0.1, 1.0), "pfeiffer": (0.1, 1.0), "repadapter": (0.1, 1.0), "adaptformer": (0.1, 0.2),
                "convpass": (1.0, 10.0), "fact_tt": (1.0, 10.0), "fact_tk": (1.0, 10.0)}


def _rows(config, workdir: str, grid) -> tuple[dict, dict]:
  """(recorded plan, {(stage, key): row}) of a sweep workdir, read only and checked against `config`."""
  log = trial_log.open_log(config, workdir, write=False, schedule=halving_lib.defining_values(grid))
  return pairs.read_plan(workdir), log.rows


def _summaries(config, workdir: str, grid) -> tuple[dict, dict]:
  """({(task, method): summary row} of the finished pairs, {(stage, key): row}) of a sweep workdir."""
  plan, rows = _rows(config, workdir, grid)
  return {(p["task"], p["method"]): p["summary"] for p in protocol.collect(plan, rows) if p["summary"]}, rows


def _val_of(rows: dict, task: str, method: str, selected: dict) -> float:
  """The full protocol's val200 accuracy (mean over seeds) of the setting `selected` ({lr, wd, hparams...})."""
  values = [r["accuracy"] for (stage, _), r in rows.items() if stage == "tune" and r["task"] == task
            and r["method"] == method and dict(lr=r["lr"], wd=r["wd"], **r["hparams"]) == selected]
  return float(np.mean(values))


def _compare(part: str, full: dict, full_rows: dict, halved: dict) -> list[dict]:
  out = []
  for (task, method), mine in sorted(halved.items()):
    theirs = full.get((task, method))
    if theirs is None or theirs["selected"] is None or mine["selected"] is None:
      continue
    val_full = theirs["val_accuracy"]
    val_halving_pick = _val_of(full_rows, task, method, mine["selected"])
    out.append(dict(part=part, task=task, method=method, settings=theirs["num_trials"],
                    full_selected=theirs["selected"], halving_selected=mine["selected"],
                    same=theirs["selected"] == mine["selected"], full_val=val_full,
                    full_val_of_halving_pick=val_halving_pick, val_gap=val_full - val_halving_pick,
                    full_trial_epochs=theirs["tune_trial_epochs"], halving_trial_epochs=mine["tune_trial_epochs"],
                    fraction=mine["tune_trial_epochs"] / theirs["tune_trial_epochs"]))
  return out


def _sweep(config, pairs_by_task: dict, grid, workdir: str) -> float:
  """Runs (or resumes) the tune stages; returns the wall time all invocations spent on them (kept in the workdir)."""
  start = time.time()
  for task, methods in pairs_by_task.items():
    protocol.run_sweep(config, [task], methods, grid, workdir, _TRIAL_BATCH.value, final=False)
  path = os.path.join(workdir, "report_wall_s.json")
  total = (json.load(open(path)) if os.path.exists(path) else 0.0) + time.time() - start
  with open(path, "w") as f:
    json.dump(total, f)
  return total


def _markdown(rows: list[dict], walls: dict) -> str:
  lines = ["| part | task | method | settings | full selects | halving selects | val200 gap (points) | "
           "trial-epochs full / halving (fraction) |", "|---|---|---|---|---|---|---|---|"]
  short = lambda s: ", ".join(f"{k}={v}" for k, v in s.items())
  for r in rows:
    lines.append(f"| {r['part']} | {r['task']} | {r['method']} | {r['settings']} | {short(r['full_selected'])} | "
                 f"{'same' if r['same'] else short(r['halving_selected'])} | {100 * r['val_gap']:.1f} | "
                 f"{r['full_trial_epochs']} / {r['halving_trial_epochs']} ({r['fraction']:.2f}) |")
  for part in dict.fromkeys(r["part"] for r in rows):
    mine = [r for r in rows if r["part"] == part]
    full_te, half_te = sum(r["full_trial_epochs"] for r in mine), sum(r["halving_trial_epochs"] for r in mine)
    gaps = [100 * r["val_gap"] for r in mine if not r["same"]]
    listed = ", ".join(f"{g:.1f}" for g in gaps)
    lines.append(f"\n**{part}**: the same setting in {sum(r['same'] for r in mine)} of {len(mine)} pairs"
                 + (f"; where not, the full protocol's val200 of halving's pick is {listed} points below its own "
                    "pick's (val200 noise: about +-3 points)" if gaps else "")
                 + f"; trial-epochs {half_te} of {full_te} ({half_te / full_te:.2f}).")
  if walls:
    lines.append("\nWall time of the tune stages run here (compilation included, on a shared, loaded 2-core CPU): "
                 + "; ".join(f"{k} {v:.0f} s" for k, v in walls.items()) + ".")
  return "\n".join(lines) + "\n"


def main(argv) -> None:
  del argv
  cli.quiet_logging_unless_asked()
  config = base_config(_EPOCHS.value, _BACKBONE.value)
  halving = dict(schedule="halving", halving_eta=_ETA.value)
  walls = {}
  try:
    with cli.compilation_cache(_COMPILATION_CACHE.value) as compiles:
      rows = []
      if "mini" in _PARTS.value:
        full, full_rows = _summaries(config, _FULL.value, mini_grid())
        chosen = {}
        for task, method in full:
          if (not _TASKS.value or task in _TASKS.value) and (not _METHODS.value or method in _METHODS.value):
            chosen.setdefault(task, []).append(method)
        mini_halving = config_base.apply_overrides(mini_grid(), halving)
        walls["mini, halving"] = _sweep(config, chosen, mini_halving, os.path.join(_WORKDIR.value, "mini_halving"))
        halved, _ = _summaries(config, os.path.join(_WORKDIR.value, "mini_halving"), mini_halving)
        rows += _compare("mini", full, full_rows, halved)
      if "large" in _PARTS.value:
        config = base_config(_LARGE_EPOCHS.value, _BACKBONE.value)
        large = config_base.apply_overrides(mini_grid(), dict(lr=tuple(map(float, _LARGE_LR.value)),
                                                           wd=tuple(map(float, _LARGE_WD.value))))
        for method in _LARGE_METHODS.value:
          config_base.apply_overrides(large, {f"{method}.scale": LARGE_SCALES[method]})
        by_task = {task: list(_LARGE_METHODS.value) for task in _LARGE_TASKS.value}
        large_halving = config_base.apply_overrides(large.copy_and_resolve_references(), halving)
        for name, grid in (("full", large), ("halving", large_halving)):
          walls[f"large, {name}"] = _sweep(config, by_task, grid, os.path.join(_WORKDIR.value, f"large_{name}"))
        large_full, large_rows = _summaries(config, os.path.join(_WORKDIR.value, "large_full"), large)
        large_halved, _ = _summaries(config, os.path.join(_WORKDIR.value, "large_halving"), large_halving)
        rows += _compare("large", large_full, large_rows, large_halved)
  except (grid_lib.GridError, *cli.USER_ERRORS) as e:
    print(f"halving_report: error: {e}", file=sys.stderr)
    sys.exit(1)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "halving.json"), "w") as f:
    json.dump(dict(rows=rows, wall_s=walls, eta=_ETA.value, epochs=_EPOCHS.value, large_epochs=_LARGE_EPOCHS.value,
                   argv=sys.argv[1:]), f, indent=1)
  text = _markdown(rows, walls)
  with open(os.path.join(_OUT.value, "halving.md"), "w") as f:
    f.write(text)
  print(text)
  print(compiles.summary())


if __name__ == "__main__":
  app.run(main)
