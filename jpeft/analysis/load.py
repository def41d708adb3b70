"""Reads a sweep's saved predictions, checked against its records.

For every (task, method) of `summary.jsonl`, the selected hyperparameter setting's rows in `trials.jsonl` name
the files: each final seed's test predictions and (sweeps made since jpeft saves them) each tune seed's val200
predictions. A file whose argmax accuracy is not its row's accuracy is stale (overwritten by another run) and
stops the analysis, as do test sets whose labels differ between methods.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from jpeft.sweep import protocol, trial_log


class AnalysisError(ValueError):
  """A sweep directory or option the analysis cannot use; the message names it and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One evaluation split of one task, every method's predictions on it.

  Attributes:
    labels: int [N], the same for every method (checked on load).
    logits: {method: {seed: float [N, C]}}, seeds in the sweep's order (the first is the primary seed).
  """
  labels: np.ndarray
  logits: Mapping[str, Mapping[int, np.ndarray]]

  def primary(self, method: str) -> np.ndarray:
    """[N, C] logits of `method`'s first seed: the member that method-level statistics use."""
    return next(iter(self.logits[method].values()))


@dataclasses.dataclass(frozen=True)
class TaskPredictions:
  """A task's test predictions and, where the sweep saved them, the selected trials' val200 predictions."""
  task: str
  test: Split
  val: Optional[Split]  # None: the sweep predates saved val200 predictions (no selection on val possible)


def read_jsonl(path: str) -> list[dict]:
  """Rows of a JSON-lines file; a torn last line (a sweep killed in the middle of a write) is left out."""
  with open(path) as f:
    text = f.read()
  return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def _setting(row: Mapping) -> dict:
  """A trial row's hyperparameters in the form of the summary's 'selected' field."""
  return dict(lr=row["lr"], wd=row["wd"], **row["hparams"])


def _check_names(kind: str, asked: Optional[Sequence[str]], present: list[str], workdir: str) -> list[str]:
  if not asked:
    return present
  unknown = [name for name in asked if name not in present]
  if unknown:
    raise AnalysisError(f"Unknown {kind} {', '.join(repr(u) for u in unknown)}: the sweep in {workdir} has "
                        f"{', '.join(present)}. Pass --{kind}s= with names from that list, or leave it out to "
                        f"analyse all of them.")
  return list(dict.fromkeys(asked))


def load_file(workdir: str, row: Mapping) -> tuple[np.ndarray, np.ndarray]:
  """(logits [N, C], labels [N]) of the file `row` names, checked against the row's accuracy."""
  path = os.path.join(workdir, row["predictions"])
  if not os.path.exists(path):
    raise AnalysisError(f"{path} is missing, though trials.jsonl records it for {row['key']} ({row['stage']}). "
                        "Restore the sweep's predictions/ folder or rerun the sweep into a new --workdir.")
  with np.load(path) as saved:
    logits, labels = saved["logits"], saved["labels"]
  correct = int(np.sum(logits.argmax(-1) == labels))
  if correct != round(row["accuracy"] * len(labels)):
    raise AnalysisError(f"{path} does not hold the predictions of its run: their accuracy is "
                        f"{correct / len(labels):.4f}, trials.jsonl records {row['accuracy']:.4f} for "
                        f"{row['key']} ({row['stage']}). Another run overwrote it; rerun the sweep into a new "
                        "--workdir.")
  return logits, labels


def _split(task: str, name: str, loaded: Mapping[str, Mapping[int, tuple]]) -> Split:
  """A Split from {method: {seed: (logits, labels)}}, after checking that every file has the same labels."""
  (first_method, first), *_ = loaded.items()
  first_seed, (_, labels) = next(iter(first.items()))
  for method, seeds in loaded.items():
    for seed, (logits, other) in seeds.items():
      if other.shape != labels.shape or np.any(other != labels) or logits.shape[0] != len(labels):
        differ = (f"{len(other)} vs {len(labels)} samples" if other.shape != labels.shape else
                  f"{np.sum(other != labels)} of {len(labels)} labels differ")
        raise AnalysisError(
            f"The {name} predictions of {task}: {method} seed {seed} has labels that differ from {first_method} "
            f"seed {first_seed} ({differ}): they come from different {name} sets "
            "(e.g. sweeps of different data merged into one workdir). Analyse only predictions of one data "
            "setup: rerun the sweep into a new --workdir, or leave the odd task or method out.")
  return Split(labels=labels, logits={m: {s: v[0] for s, v in seeds.items()} for m, seeds in loaded.items()})


def selected_rows(workdir: str, tasks: Optional[Sequence[str]] = None, methods: Optional[Sequence[str]] = None,
                  summaries: Optional[Sequence[Mapping]] = None
                  ) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, dict[int, dict]]]]:
  """The trials.jsonl rows whose predictions the analysis reads: (tasks, methods, {(task, method): {'final':
  {seed: row}, 'tune': {seed: row}}}), tasks and methods in the order asked (default: the summary's order).

  'final' holds each final seed's row (test predictions); 'tune' each tuning seed's row of the selected setting
  (val200 predictions), or nothing when one of them saved none. `summaries`: the summary rows to follow instead
  of <workdir>/summary.jsonl (`jpeft.analysis.pack` on a sweep still running). Raises AnalysisError: no sweep in
  `workdir`, an unknown task or method, a (task, method) without saved test predictions.
  """
  summary_path = os.path.join(workdir, protocol.SUMMARY_FILE)
  trials_path = os.path.join(workdir, trial_log.TRIALS_FILE)
  if not ((summaries is not None or os.path.exists(summary_path)) and os.path.exists(trials_path)):
    raise AnalysisError(f"{workdir} holds no finished sweep ({protocol.SUMMARY_FILE} and {trial_log.TRIALS_FILE} "
                        "are written by `python -m jpeft.sweep --workdir=...`). Pass --sweep=<that workdir>.")
  summaries = read_jsonl(summary_path) if summaries is None else summaries
  rows: dict[tuple[str, str], list[dict]] = {}  # (task, method) -> rows, the last row of a trial key winning
  for row in {(r["stage"], r["key"]): r for r in read_jsonl(trials_path)}.values():
    rows.setdefault((row["task"], row["method"]), []).append(row)
  tasks = _check_names("task", tasks, list(dict.fromkeys(s["task"] for s in summaries)), workdir)
  methods = _check_names("method", methods, list(dict.fromkeys(s["method"] for s in summaries)), workdir)
  by_pair = {(s["task"], s["method"]): s for s in summaries}
  chosen: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
  missing = []
  for task in tasks:
    for method in methods:
      summary = by_pair.get((task, method))
      stages: dict[str, dict[int, dict]] = {"final": {}, "tune": {}}
      for row in rows.get((task, method), []):
        if summary is not None and _setting(row) == summary["selected"]:
          stages[row["stage"]][row["seed"]] = row
      final = {s: stages["final"][s] for s in (summary or {}).get("seeds", [])
               if "predictions" in stages["final"].get(s, {})}
      if summary is None or not summary["seeds"] or len(final) < len(summary["seeds"]):
        missing.append(f"{task}/{method}")
      # The tuning seeds can be fewer than the final ones (--grid.final_seeds); val200 is usable only if every
      # tuning seed of the selected setting saved its predictions.
      tune = stages["tune"] if all("predictions" in r for r in stages["tune"].values()) else {}
      chosen[(task, method)] = {"final": final, "tune": tune}
  if missing:
    raise AnalysisError(f"The sweep in {workdir} has no saved test predictions for {', '.join(missing)} (not "
                        "swept, every trial diverged, run with --nofinal, or made before jpeft saved "
                        "predictions). Rerun the sweep for them into a new --workdir, or leave them out with "
                        "--tasks= / --methods=.")
  return tasks, methods, chosen


def load_sweep(workdir: str, tasks: Optional[Sequence[str]] = None,
               methods: Optional[Sequence[str]] = None) -> list[TaskPredictions]:
  """Every analysed task's predictions, tasks and methods in the order asked (default: the summary's order).

  Raises AnalysisError naming the problem: no sweep in `workdir`, an unknown task or method, a (task, method)
  without saved test predictions, a missing or stale file, labels that differ between methods.
  """
  tasks, methods, chosen = selected_rows(workdir, tasks, methods)
  out = []
  for task in tasks:
    test = {m: {s: load_file(workdir, r) for s, r in chosen[(task, m)]["final"].items()} for m in methods}
    with_val = all(chosen[(task, m)]["tune"] for m in methods)
    val = ({m: {s: load_file(workdir, r) for s, r in chosen[(task, m)]["tune"].items()} for m in methods}
           if with_val else None)
    out.append(TaskPredictions(task, _split(task, "test", test),
                               None if val is None else _split(task, "val200", val)))
  return out
