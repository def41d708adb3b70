"""The robustness table of finished runs: in-distribution and shifted accuracy of each, beside the study's.

  python -m jpeft.robustness_table --runs=runs/clip_imagenet/lora,runs/clip_imagenet/full \
      --out=runs/clip_imagenet

Reads each run's result.json (written by `python -m jpeft.main` at its end; trains and evaluates nothing): its
eval split's accuracy (ImageNet: the official validation set, the study's 'IN'), `shift_accuracy` (its
`config.shift_tasks`, in the order of the first run) and their mean, and with early stopping the epoch whose
parameters these are. Writes robustness.md (percent) and robustness.csv (fractions) into --out. Runs on ImageNet
with the study's four shifted sets get the study's numbers (CLIP ViT-B/16, spec "Many-shot and robustness") on
rows of their own, for orientation: they are the study's runs, not these. WiSE-FT curves: `python -m jpeft.wise`.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

from absl import app, flags

from jpeft import cli
from jpeft.train import results
from jpeft.train.errors import ConfigError

STUDY_SHIFTS = ("imagenet_v2_test", "imagenet_sketch_test", "imagenet_a_test", "imagenet_r_test")
# The study's table (percent): IN, IN-V2, IN-Sketch, IN-A, IN-R.
STUDY = {
    "zero-shot": (67.69, 61.09, 47.75, 48.89, 76.95), "linear": (74.28, 65.15, 46.86, 44.11, 71.42),
    "full": (74.95, 62.83, 36.43, 18.43, 52.32), "lora": (76.56, 66.95, 46.31, 40.29, 70.20),
    "adapter": (75.01, 65.60, 47.73, 41.91, 72.50), "bitfit": (75.27, 65.51, 46.03, 39.47, 70.77),
}
RESULT = "result.json"


def load(workdir: str) -> dict:
  """A finished run's result.json; ConfigError naming the folder if there is none."""
  path = os.path.join(workdir, RESULT)
  if not os.path.exists(path):
    raise ConfigError(f"'{workdir}' has no {RESULT}: pass the --workdir of finished training runs (a run writes "
                      f"{RESULT} at its end; an unfinished one resumes when its command is started again).")
  with open(path) as f:
    return json.load(f)


def rows(workdirs: Sequence[str]) -> tuple[list[dict], list[str]]:
  """(one row per run, the column names of its sets: eval split first, then the shifted sets). A row holds
  'method', 'run', 'task', one accuracy (fraction) per set, 'shift_mean', 'best_epoch' and 'stopped_epoch' (None
  without early stopping). ConfigError if the runs scored different shifted sets."""
  runs = [(w, load(w)) for w in workdirs]
  if not runs:
    raise ConfigError("--runs names no run: pass finished runs' workdirs, comma-separated.")
  shifts = list(runs[0][1]["shift_accuracy"])
  out = []
  for workdir, result in runs:
    if list(result["shift_accuracy"]) != shifts:
      raise ConfigError(f"'{workdir}' scored the shifted sets {list(result['shift_accuracy'])}, but "
                        f"'{runs[0][0]}' scored {shifts}: tabulate runs with the same config.shift_tasks.")
    stopping = result.get("early_stopping") or {}
    row = dict(method=result["method"], run=workdir, task=result["task"], in_distribution=result["accuracy"],
               **result["shift_accuracy"],
               shift_mean=sum(result["shift_accuracy"].values()) / len(shifts) if shifts else None,
               best_epoch=stopping.get("best_epoch"), stopped_epoch=stopping.get("stopped_epoch"))
    out.append(row)
  return out, ["in_distribution", *shifts]


def _study_rows(table: list[dict], sets: list[str]) -> list[dict]:
  """The study's rows for the methods in `table` (and its zero-shot row), when the runs are its experiment."""
  if sets[1:] != list(STUDY_SHIFTS) or any(row["task"] != "imagenet" for row in table):
    return []
  methods = ["zero-shot"] + [m for m in dict.fromkeys(row["method"] for row in table) if m in STUDY]
  out = []
  for method in methods:
    values = [v / 100 for v in STUDY[method]]
    out.append(dict(method=f"{method} (study)", run="Mai et al., CVPR 2025", task="imagenet",
                    **dict(zip(sets, values)), shift_mean=sum(values[1:]) / 4, best_epoch=None, stopped_epoch=None))
  return out


def write(out_dir: str, table: list[dict], sets: list[str]) -> dict[str, str]:
  """Writes robustness.md and robustness.csv (with the study's rows where they apply); returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"robustness.{kind}") for kind in ("md", "csv")}
  study = _study_rows(table, sets)
  every = table + study
  columns = ["method", *sets, "shift_mean", "best_epoch", "stopped_epoch", "run"]
  results.write_csv(paths["csv"], every, columns)
  pct = lambda v: "" if v is None else f"{100 * v:.2f}"
  names = [f"{table[0]['task']} (eval split)", *(s[:-len("_test")] if s.endswith("_test") else s for s in sets[1:])]
  lines = ["Accuracy (%) of each run's reported parameters (the best ones under early stopping) on its eval split "
           "and its shifted test sets" + ("; rows marked (study) are the study's CLIP ViT-B/16 numbers." if study
                                          else "."), "",
           "| method | " + " | ".join(names) + " | mean of shifts | best / stopped epoch | run |",
           "|---|" + "---|" * (len(sets) + 3)]
  for row in every:
    epochs = "" if row["best_epoch"] is None else f"{row['best_epoch']} / {row['stopped_epoch']}"
    lines.append(f"| {row['method']} | " + " | ".join(pct(row[s]) for s in sets) +
                 f" | {pct(row['shift_mean'])} | {epochs} | {row['run']} |")
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines) + "\n")
  return paths


def run(workdirs: Sequence[str], out_dir: Optional[str]) -> dict[str, str]:
  """The table of `workdirs` in `out_dir` (default: the first run's folder); returns the written paths."""
  table, sets = rows(workdirs)
  return write(out_dir or workdirs[0], table, sets)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  try:
    paths = run(_RUNS.value, _OUT.value)
  except ConfigError as e:
    print(f"jpeft.robustness_table: error: {e}", file=sys.stderr)
    sys.exit(1)
  with open(paths["md"]) as f:
    print(f.read())
  print("Written: " + ", ".join(paths.values()))


if __name__ == "__main__":
  # Defined only when run as a program: tests import this module beside other CLIs with an --out flag.
  _RUNS = flags.DEFINE_list("runs", None, "Finished training runs (their --workdir), comma-separated; one row each.")
  _OUT = flags.DEFINE_string("out", None, "Output folder for robustness.{md,csv} (default: the first run's workdir).")
  flags.mark_flag_as_required("runs")
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.robustness_table", ()))
