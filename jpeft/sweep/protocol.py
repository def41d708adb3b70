"""The study's tuning protocol, resumable: tune every trial, pick by val200, retrain the winner, report test.

For each (task, method):
  1. tune   every trial of the grid (lr x wd x method grid x seeds) on train800, evaluate val200 (many-shot,
     `config.data.subset`: on each of the size's tuning splits, `jpeft.data.manyshot`);
  2. select the hyperparameter setting with the best val200 accuracy at the last epoch, averaged over seeds
     and tuning splits (diverged trials excluded; ties go to the first setting in grid order);
  3. final  retrain that setting on train800val200 with every seed (`grid.final_seeds` if set, else the tuning
     seeds), evaluate test: mean and spread.

Every finished trial is appended as one JSON line to `<workdir>/trials.jsonl` (flushed and fsynced per
chunk); a restarted sweep reads it and trains only the trials that have no row yet. `summary.jsonl` gets one
row per (task, method), and `summary.csv` the same as a table. The final runs' test predictions go to
`<workdir>/predictions/<task>/<method>_seed<seed>.npz` (`logits` [N, C], `labels` [N]), and every tune trial's
val200 predictions to `<workdir>/predictions/<task>/val/<method>_<hyperparameters>_seed<seed>.npz`, for
ensembles and error analysis across methods (`jpeft.analysis`); each row names its file (`predictions`).

The base config the trials are made under is recorded in `<workdir>/sweep_config.json`; a rerun under another
base config is refused (see `jpeft.sweep.trial_log`).

Launched as several processes (`jax.distributed`), every process runs the same protocol and trains its devices'
share of each chunk's trials (`jpeft.sweep.runner`); only process 0 writes to the workdir (a shared
filesystem: the others read it to resume).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import statistics
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jpeft.sweep import grid as grid_lib
from jpeft.sweep import runner, trial_log
from jpeft.train import splits
from jpeft.train.errors import ConfigError

PREDICTIONS_DIR = "predictions"
SUMMARY_FILE = "summary.jsonl"
SUMMARY_CSV = "summary.csv"


def select(rows: Sequence[Mapping[str, Any]]) -> Optional[str]:
  """The config_key with the best mean accuracy over its seeds and tuning splits, or None if every trial diverged.

  rows: tune rows of one (task, method), in grid order. A setting with any diverged seed is excluded (its
  mean would mix a stopped run with finished ones); ties go to the setting seen first.
  """
  by_config: dict[str, list] = {}
  for row in rows:
    by_config.setdefault(row["config_key"], []).append(row)
  best, best_accuracy = None, -np.inf
  for key, members in by_config.items():
    if any(r["diverged"] for r in members):
      continue
    accuracy = float(np.mean([r["accuracy"] for r in members]))
    if accuracy > best_accuracy:
      best, best_accuracy = key, accuracy
  return best


def _summary_row(trials: Sequence[grid_lib.Trial], tune_rows: list[dict], winner: Optional[str],
                 final_rows: list[dict]) -> dict:
  base = dict(task=trials[0].task, method=trials[0].method, num_trials=len(trials),
              diverged=sum(r["diverged"] for r in tune_rows))
  if winner is None:
    return dict(base, selected=None, val_accuracy=None, test_accuracy=None, test_std=None, seeds=[])
  chosen = [r for r in tune_rows if r["config_key"] == winner]
  tests = [r["accuracy"] for r in final_rows]
  return dict(base, selected=dict(lr=chosen[0]["lr"], wd=chosen[0]["wd"], **chosen[0]["hparams"]),
              val_accuracy=float(np.mean([r["accuracy"] for r in chosen])),
              tune_splits=len({r.get("tune_split", 0) for r in chosen}),
              test_accuracy=float(np.mean(tests)) if tests else None,
              test_std=float(statistics.pstdev(tests)) if tests else None,
              test_best_epoch_accuracy=float(np.mean([r["best_accuracy"] for r in final_rows])) if tests else None,
              seeds=[r["seed"] for r in final_rows], trainable_params=chosen[0]["trainable_params"])


def predictions_path(workdir: str, task: str, method: str, seed: int) -> str:
  """Where a final run's test logits and labels are saved."""
  return os.path.join(workdir, PREDICTIONS_DIR, task, f"{method}_seed{seed}.npz")


def val_predictions_path(workdir: str, row: Mapping[str, Any]) -> str:
  """Where a tune trial's val200 logits and labels are saved: one file per trial, named by its
  hyperparameters (the trial key without the task; characters unsafe in file names become '-')."""
  setting = row["config_key"].split("|", 2)[2].replace("|", "_")
  name = re.sub(r"[^A-Za-z0-9._=+-]", "-", f"{row['method']}_{setting}_seed{row['seed']}")
  return os.path.join(workdir, PREDICTIONS_DIR, row["task"], "val", f"{name}.npz")


def _save_predictions(workdir: str, rows: Sequence[dict], predictions: Mapping[str, np.ndarray]) -> None:
  """One .npz per row: a final row's test predictions, a tune row's val200 predictions (written before the
  row is recorded, so a recorded row has its file)."""
  for row, logits in zip(rows, predictions["logits"]):
    path = (predictions_path(workdir, row["task"], row["method"], row["seed"]) if row["stage"] == "final"
            else val_predictions_path(workdir, row))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, logits=logits, labels=predictions["labels"])
    row["predictions"] = os.path.relpath(path, workdir)


def run_sweep(config, tasks: Sequence[str], methods: Sequence[str], grid: Mapping, workdir: str,
              trial_batch: int, final: bool = True,
              log: Callable[[str], None] = print) -> list[dict]:
  """Runs the protocol for every task x method; returns (and writes) one summary row per pair.

  Args:
    config: base config (data, model, optim; method, lr, wd, peft and seed are set per trial).
    tasks, methods: what to sweep.
    grid: 'lr', 'wd', 'seeds' and per-method grids (see `jpeft.sweep.grid.default_grid`).
    workdir: where trials.jsonl, sweep_config.json, summary.jsonl and summary.csv live; rerunning with the same
      base config resumes (more tasks, methods or grid values included).
    trial_batch: trials trained together in one compiled program.
    final: also retrain the winner on train800val200 and evaluate test.
    log: progress messages.
  Raises:
    ConfigError: the workdir's trials were made under another base config, or init_from or early stopping is set.
    TrialLogError: trials.jsonl has a line that is not a trial record, or a row of another config.
  """
  if config.init_from.workdir:  # every trial would silently start from the pretrained backbone instead
    raise ConfigError(f"Config field 'init_from.workdir' = '{config.init_from.workdir}' is not supported by sweeps: "
                      "each trial starts from the pretrained backbone and a fresh head. Drop it to sweep, or start "
                      "single runs from that run with python -m jpeft.main.")
  if config.init_from.get("peft"):  # trials are initialised from the seed (model_setup's init_params), not from it
    raise ConfigError(f"Config field 'init_from.peft' = '{config.init_from.peft}' is not supported by sweeps: each "
                      "trial starts from the pretrained backbone. Drop it to sweep, or start single runs from the "
                      "adapter with python -m jpeft.main.")
  if config.early_stopping.patience:  # trials train their epochs in lockstep, each to the end
    raise ConfigError(f"Config field 'early_stopping.patience' = {config.early_stopping.patience} is not supported "
                      "by sweeps: their trials train every epoch and are selected by val accuracy (last and best "
                      "epoch). Set it to 0 to sweep, or train single runs with python -m jpeft.main.")
  final_seeds = grid_lib.final_seeds(grid)  # checked here: a bad seed stops the sweep before any training
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0
  record = trial_log.open_log(config, workdir, write=lead)

  def record_chunk(rows, predictions):
    if lead:
      _save_predictions(workdir, rows, predictions)
    record.append(rows)

  summaries = []
  for task in tasks:
    data: dict = {}  # this task's splits, loaded once for all its methods and groups
    for method in methods:
      runners: dict = {}  # compiled programs of this method's shape groups, shared by its tune and final runs
      trials = grid_lib.expand(task, method, grid, splits.num_tune_splits(config, task))
      todo = [t for t in trials if not record.has("tune", t)]
      log(f"{task}/{method}: {len(trials)} trials in {len(grid_lib.shape_groups(trials))} shape groups; "
          f"{len(trials) - len(todo)} already finished, training {len(todo)}")
      runner.run_trials(config, todo, "tune", trial_batch, on_chunk=record_chunk, data=data, runners=runners)
      tune_rows = [record.get("tune", t) for t in trials]
      winner = select(tune_rows)
      final_rows: list[dict] = []
      if winner is not None and final:
        setting = next(t for t in trials if t.config_key == winner and t.tune_split == 0)
        finals = [dataclasses.replace(setting, seed=seed) for seed in final_seeds]
        todo = [t for t in finals if not record.has("final", t)]
        log(f"{task}/{method}: selected {winner}; final on {splits.mode_splits(config, 'final')[0][0]} x "
            f"{len(finals)} seeds, training {len(todo)}")
        runner.run_trials(config, todo, "final", trial_batch, on_chunk=record_chunk, data=data,
                          runners=runners)
        final_rows = [record.get("final", t) for t in finals]
      summaries.append(_summary_row(trials, tune_rows, winner, final_rows))
  if lead:
    write_summary(summaries, workdir)
  return summaries


def write_summary(summaries: Sequence[dict], workdir: str) -> None:
  """summary.jsonl (one JSON row per task x method) and summary.csv (hyperparameters as one JSON column)."""
  with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
    for row in summaries:
      f.write(json.dumps(row) + "\n")
  fields = ["task", "method", "test_accuracy", "test_std", "val_accuracy", "trainable_params", "num_trials",
            "diverged", "seeds", "selected"]
  with open(os.path.join(workdir, SUMMARY_CSV), "w", newline="") as f:
    writer = csv.DictWriter(f, fields, extrasaction="ignore")
    writer.writeheader()
    for row in summaries:
      writer.writerow({k: json.dumps(row.get(k)) if k in ("seeds", "selected") else row.get(k) for k in fields})
