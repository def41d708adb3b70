"""A sweep's report from its workdir alone: tables, plot and prediction analysis of the finished pairs, and the
state of every other pair. Trains nothing; needs no config (`sweep_plan.json` records the sweep).

  python -m jpeft.sweep --workdir=runs/sweep --report

Finished pairs go into summary.jsonl / summary.csv, results.md / results.csv and accuracy_vs_params.png (as a
sweep writes them) and, where at least two methods finished every task of the rectangle, the prediction
analysis (`jpeft.analysis`, into <workdir>/analysis). Every other pair is named with its state: never started,
running on host/pid (at stage and epoch), unfinished at an epoch (its process ended), or diverged (finished,
with no finite trial to select).
"""
from __future__ import annotations

import os
from typing import Callable

from jpeft import workdir_lock
from jpeft.sweep import pairs, protocol, tables, trial_log
from jpeft.train.errors import ConfigError

COMPLETE, UNFINISHED = 0, 2  # exit statuses of --report: every pair has a result / some pair has none


def _plan(workdir: str) -> dict:
  plan = pairs.read_plan(workdir)
  if plan is None:
    raise ConfigError(f"'{workdir}' holds no recorded sweep ({pairs.PLAN_FILE} is missing): pass the --workdir of "
                      "a jpeft.sweep. A sweep made before jpeft recorded its plan gets one when its command is run "
                      "again (finished trials are not trained again).")
  return plan


def read(workdir: str) -> list[dict]:
  """Every pair of the sweep recorded in `workdir`: `protocol.collect`'s dicts plus 'state' (None when
  finished with a selected setting, else the state in words). Raises ConfigError when no sweep is recorded."""
  plan = _plan(workdir)
  # Rows as recorded: their config hashes were checked by the processes that wrote them.
  rows = trial_log.TrialLog(os.path.join(workdir, trial_log.TRIALS_FILE), lambda row: row.get(trial_log.HASH_FIELD),
                            write=False).rows
  entries = protocol.collect(plan, rows)
  for entry in entries:
    summary = entry["summary"]
    if summary is None:
      entry["state"] = pairs.pair_state(workdir, entry["task"], entry["method"], entry["recorded"], entry["total"])
    elif summary["selected"] is None:
      entry["state"] = (f"diverged: no finite trial among its {summary['num_trials']} tune trials (lower "
                        "--grid.lr, or see optim.nan_policy)")
    else:
      entry["state"] = None
  return entries


def _analyse(workdir: str, entries: list[dict], log: Callable[[str], None]) -> None:
  """The prediction analysis over the tasks on which every method of the sweep finished with test predictions."""
  from jpeft import analysis  # pylint: disable=import-outside-toplevel (matplotlib; only the report needs it)
  methods = list(dict.fromkeys(e["method"] for e in entries))
  done = {(e["task"], e["method"]) for e in entries if e["summary"] and e["summary"]["seeds"]}
  tasks = [t for t in dict.fromkeys(e["task"] for e in entries) if all((t, m) in done for m in methods)]
  if not tasks or len(methods) < 2:
    log("prediction analysis: not written (it needs two or more methods finished with test predictions on a "
        "task)")
    return
  try:
    path = analysis.run(workdir, tasks=tasks, methods=methods)
    log(f"prediction analysis of {', '.join(tasks)}: {path}")
  except analysis.AnalysisError as e:
    log(f"prediction analysis: not written: {e}")


def write(workdir: str, analyse: bool = True, log: Callable[[str], None] = print) -> list[dict]:
  """Writes the summary, tables and plot of the finished pairs (and with `analyse` the prediction analysis)
  and logs each pair without a result with its state; returns `read`'s entries."""
  _plan(workdir)  # before the lock file is made: a folder that holds no sweep is left as it is
  with workdir_lock.locked(pairs.meta_lock_path(workdir)):  # one writer of the shared files at a time
    entries = read(workdir)
    summaries = [e["summary"] for e in entries if e["summary"] is not None]
    protocol.write_summary(summaries, workdir)
    if summaries:
      tables.write_all(summaries, workdir)
  if analyse:
    _analyse(workdir, entries, log)
  for entry in entries:
    if entry["state"] is not None:
      log(f"{entry['task']}/{entry['method']}: {entry['state']}")
  finished = sum(e["summary"] is not None for e in entries)
  log(f"{finished} of {len(entries)} pairs finished in {workdir}")
  return entries


def status(entries: list[dict]) -> int:
  """COMPLETE when every pair finished with a selected setting, else UNFINISHED."""
  return COMPLETE if all(e["state"] is None for e in entries) else UNFINISHED
