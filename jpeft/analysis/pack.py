"""Packs what the prediction analysis reads from a sweep into a small folder that can be committed beside its tables.

  python -m jpeft.analysis.pack --sweep=runs/mini_study --out=experiments/results/mini_study/sweep
      [--tasks=mini_digits] [--methods=lora,ssf] [--overwrite]

The packed folder is a sweep as `python -m jpeft.analysis --sweep=<it>` reads one, holding only that:
  summary.jsonl      the sweep's summary rows of the packed (task, method) pairs, whole (`jpeft.sweep.tables`
                     makes the results table from them);
  trials.jsonl       the rows the analysis reads (`load.selected_rows`: each final seed's, and each tuning seed's
                     of the selected setting), with only the fields it reads and a few that say what a row is;
  predictions/       those rows' files, at the same relative paths, the arrays unchanged (float32 logits: float16
                     moves the argmax of about one test sample in 2,000, so the analysis would no longer be the
                     sweep's) in compressed .npz;
  sweep_config.json  the base config the trials were made under, as the sweep recorded it (its provenance);
  packed.json        where it was packed from, what it holds, and the size of the rest; it marks the folder as
                     a pack, which --overwrite may replace. (The rows carry no config hash, so
                     `python -m jpeft.sweep` refuses to resume into the folder.)
Every file is checked against its row's accuracy on the way (as the analysis checks it), so a stale file is never
packed. The folder is written beside --out under a temporary name and renamed once complete.

A sweep still running (no summary.jsonl yet) is packed from its recorded plan: by default its finished tasks (every
pair of the task finished); --tasks= and --methods= may name finished pairs of a task still running.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from typing import Mapping, Optional, Sequence

import numpy as np
from absl import app, flags

from jpeft import cli, outputs
from jpeft.analysis import load
from jpeft.analysis.load import AnalysisError
from jpeft.sweep import pairs, protocol, trial_log

MARKER = "packed.json"
# What a packed trial row keeps: the fields `load` reads, and those that say what the row is.
TRIAL_FIELDS = ("key", "config_key", "task", "method", "lr", "wd", "hparams", "seed", "tune_split", "stage",
                "eval_split", "accuracy", "predictions")


def _running_summaries(workdir: str, tasks: Optional[Sequence[str]], methods: Optional[Sequence[str]]
                       ) -> tuple[list[dict], list[str], list[str]]:
  """(summary rows of the finished pairs, the methods to pack, tasks left out as unfinished) of a sweep without
  summary.jsonl, from its recorded plan, as the sweep would write them at its end (`protocol.collect`). Every
  planned method of the packed tasks is packed unless `methods` says otherwise; a pair of them still running
  is an AnalysisError."""
  plan = pairs.read_plan(workdir)
  trials_path = os.path.join(workdir, trial_log.TRIALS_FILE)
  if plan is None or not os.path.exists(trials_path):
    raise AnalysisError(f"{workdir} holds no sweep ({protocol.SUMMARY_FILE}, or {pairs.PLAN_FILE} and "
                        f"{trial_log.TRIALS_FILE}, are written by `python -m jpeft.sweep --workdir=...`). Pass "
                        "--sweep=<that workdir>.")
  rows = {(r["stage"], r["key"]): r for r in load.read_jsonl(trials_path)}
  state = protocol.collect(plan, rows)
  unfinished = list(dict.fromkeys(p["task"] for p in state if p["summary"] is None))
  keep = tasks or [t for t in dict.fromkeys(p["task"] for p in state) if t not in unfinished]
  if not keep:
    raise AnalysisError(f"The sweep in {workdir} has not finished any task yet ({', '.join(unfinished)} still "
                        "running): nothing to pack. Pass --tasks= and --methods= to pack its finished pairs.")
  methods = methods or list(dict.fromkeys(p["method"] for p in state if p["task"] in keep))
  running = [f"{p['task']}/{p['method']}" for p in state
             if p["summary"] is None and p["task"] in keep and p["method"] in methods]
  if running:
    raise AnalysisError(f"The sweep in {workdir} is still running {', '.join(running)}: pack them once they have "
                        "finished, or leave them out with --tasks= / --methods=.")
  return ([p["summary"] for p in state if p["summary"] and p["task"] in keep], methods,
          [t for t in unfinished if t not in keep])


def _check_out(out: str, overwrite: bool) -> bool:
  """Whether `out` holds an earlier pack to replace; raises OutputError if it may not be written."""
  if os.path.isdir(out) and os.listdir(out):
    if not os.path.exists(os.path.join(out, MARKER)):
      raise outputs.OutputError(f"--out='{out}' is a folder that is not empty and holds no earlier pack (no "
                                f"{MARKER}); nothing there is replaced, even with --overwrite. Choose a new folder.")
    if not overwrite:
      raise outputs.OutputError(f"--out='{out}' holds an earlier pack; pass --overwrite to replace it, or choose "
                                "another folder.")
    return True
  outputs.check_dir(out)
  return False


def _write_json_lines(path: str, rows: Sequence[Mapping]) -> None:
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def _size(folder: str) -> tuple[int, int]:
  """(files, bytes) under `folder`."""
  sizes = [os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files]
  return len(sizes), sum(sizes)


def pack(sweep: str, out: str, tasks: Optional[Sequence[str]] = None, methods: Optional[Sequence[str]] = None,
         overwrite: bool = False) -> dict:
  """Writes the packed copy of `sweep` to `out` (see the module docstring) and returns its packed.json record,
  with the folder's 'files' and 'bytes' (packed.json included) added.

  Raises AnalysisError for a sweep the analysis could not read (before writing anything), OutputError for an
  `out` that may not be written (an existing folder that is not a pack, or a pack without `overwrite`).
  """
  replace = _check_out(out, overwrite)
  left_out: list[str] = []
  summaries = None
  if not os.path.exists(os.path.join(sweep, protocol.SUMMARY_FILE)):
    summaries, methods, left_out = _running_summaries(sweep, tasks, methods)
  tasks, methods, chosen = load.selected_rows(sweep, tasks, methods, summaries)
  if summaries is None:
    summaries = load.read_jsonl(os.path.join(sweep, protocol.SUMMARY_FILE))
  parent, name = os.path.split(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
  try:
    os.makedirs(tmp)
    rows = [row for task in tasks for method in methods for stage in ("final", "tune")
            for row in chosen[(task, method)][stage].values()]
    for row in rows:
      logits, labels = load.load_file(sweep, row)  # checked against the row's accuracy
      path = os.path.join(tmp, row["predictions"])
      os.makedirs(os.path.dirname(path), exist_ok=True)
      np.savez_compressed(path, logits=logits, labels=labels)
    _write_json_lines(os.path.join(tmp, trial_log.TRIALS_FILE),
                      [{k: row[k] for k in TRIAL_FIELDS if k in row} for row in rows])
    _write_json_lines(os.path.join(tmp, protocol.SUMMARY_FILE),
                      [s for s in summaries if s["task"] in tasks and s["method"] in methods])
    config = os.path.join(sweep, trial_log.SWEEP_CONFIG_FILE)
    if os.path.exists(config):
      shutil.copyfile(config, os.path.join(tmp, trial_log.SWEEP_CONFIG_FILE))
    files, size = _size(tmp)
    record = dict(packed_from=os.path.abspath(sweep), tasks=tasks, methods=methods,
                  predictions=sum(r["stage"] == "final" for r in rows),
                  val_predictions=sum(r["stage"] == "tune" for r in rows), unfinished_tasks_left_out=left_out,
                  other_files=files, other_bytes=size)  # besides packed.json
    with open(os.path.join(tmp, MARKER), "w") as f:
      json.dump(record, f, indent=2)
      f.write("\n")
    record["files"], record["bytes"] = _size(tmp)
    if replace:  # the earlier pack goes only once the new one is complete
      old = tmp + ".old"
      os.rename(out, old)
      try:
        os.rename(tmp, out)
      except OSError:
        os.rename(old, out)
        raise
      shutil.rmtree(old)
    else:
      if os.path.isdir(out):  # empty
        os.rmdir(out)
      os.rename(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return record


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  try:
    record = pack(_SWEEP.value, _OUT.value, _TASKS.value, _METHODS.value, _OVERWRITE.value)
  except (AnalysisError, outputs.OutputError) as e:
    print(f"jpeft.analysis.pack: error: {e}", file=sys.stderr)
    sys.exit(1)
  if record["unfinished_tasks_left_out"]:
    print(f"Left out, still running: {', '.join(record['unfinished_tasks_left_out'])}.")
  print(f"Packed {len(record['tasks'])} task(s) x {len(record['methods'])} method(s) of {_SWEEP.value} into "
        f"{_OUT.value}: {record['predictions']} test and {record['val_predictions']} val200 prediction files, "
        f"{record['files']} files, {record['bytes'] / 2**20:.2f} MiB.")


if __name__ == "__main__":
  # Defined only when run as a program: tests import this module beside other CLIs with --sweep and --out flags.
  _SWEEP = flags.DEFINE_string("sweep", None, "A sweep workdir (the --workdir of `python -m jpeft.sweep`).")
  _OUT = flags.DEFINE_string("out", None, "The packed folder to write: new or empty, or an earlier pack with "
                             "--overwrite.")
  _TASKS = flags.DEFINE_list("tasks", None, "Tasks to pack (default: every task of the sweep; of a sweep still "
                             "running, every finished task).")
  _METHODS = flags.DEFINE_list("methods", None, "Methods to pack (default: every method of the sweep).")
  _OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier pack at --out.")
  flags.mark_flags_as_required(["sweep", "out"])
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.analysis.pack", ()))
