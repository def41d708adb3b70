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

Independent processes may sweep one workdir at once (`jpeft.sweep.pairs`): each (task, method) pair is trained
by the process holding its lock, trials.jsonl is appended to under a lock, and summary.jsonl is rewritten from
every finished pair of the recorded plan when a process ends. Launched as several processes of one job
(`jax.distributed`), every process runs the same protocol and trains its devices' share of each chunk's trials
(`jpeft.sweep.runner`); only process 0 takes the locks and writes to the workdir (a shared filesystem: the
others read it to resume).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import json
import os
import re
import statistics
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jpeft import workdir_lock
from jpeft.data import input_pipeline
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import halving, padding, pairs, runner, trial_log
from jpeft.train import config_checks, errors, splits
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
                 final_rows: list[dict], schedule: str = "full") -> dict:
  base = dict(task=trials[0].task, method=trials[0].method, num_trials=len(trials),
              diverged=sum(r["diverged"] for r in tune_rows), schedule=schedule,
              tune_trial_epochs=halving.trial_epochs(tune_rows))
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
    with errors.writing(path, trial_log.SWEEP_KEPT):
      os.makedirs(os.path.dirname(path), exist_ok=True)
      np.savez(path, logits=logits, labels=predictions["labels"])
    row["predictions"] = os.path.relpath(path, workdir)


def final_trials(trials: Sequence[grid_lib.Trial], winner: str, seeds: Sequence[int]) -> list[grid_lib.Trial]:
  """The final runs of the selected setting `winner` (a config_key of `trials`): one per seed."""
  setting = next(t for t in trials if t.config_key == winner and t.tune_split == 0)
  return [dataclasses.replace(setting, seed=seed) for seed in seeds]


def tune_winner(trials: Sequence[grid_lib.Trial], tune: Sequence[Optional[dict]],
                grid: Mapping) -> tuple[bool, Optional[str]]:
  """(whether the tune stage is finished, its selected config key or None) from the recorded tune rows of
  `trials` (None where a trial has none). Under halving only the settings that finished every rung compete
  (`halving.finishers`, recomputed from the rows)."""
  if any(r is None for r in tune):
    return False, None
  if halving.kind(grid) == "full":
    return True, select(tune)
  epochs = next((r["halving"]["epochs"] for r in tune if "halving" in r), None)
  if epochs is None:  # rows of a full-schedule sweep: trial_log's hash keeps them out of a halving one
    return False, None
  schedule = halving.resolve(grid, epochs, len({t.config_key for t in trials}))
  alive = halving.finishers(trials, {t.key: r for t, r in zip(trials, tune)}, schedule)
  if alive is None:
    return False, None
  return True, select([r for r in tune if r["config_key"] in alive])


def pair_summary(trials: Sequence[grid_lib.Trial], rows: Mapping[tuple[str, str], dict], final_seeds: Sequence[int],
                 final: bool, grid: Optional[Mapping] = None) -> tuple[Optional[dict], int, int]:
  """(summary row, or None while the pair is unfinished; trials recorded; trials it takes) of one (task, method)
  from the recorded `rows` ({(stage, key): row}) of a sweep with `grid` (its schedule; default: full). A pair
  whose every trial diverged is finished, with selected None."""
  grid = grid or {}
  tune = [rows.get(("tune", t.key)) for t in trials]
  total = len(trials) + (len(final_seeds) if final else 0)
  recorded = sum(r is not None for r in tune)
  done, winner = tune_winner(trials, tune, grid)
  if not done:
    return None, recorded, total
  final_rows = []
  if winner is not None and final:
    final_rows = [rows.get(("final", t.key)) for t in final_trials(trials, winner, final_seeds)]
    recorded += sum(r is not None for r in final_rows)
    if recorded < total:
      return None, recorded, total
  return _summary_row(trials, tune, winner, final_rows, halving.kind(grid)), recorded, total


def collect(plan: Mapping, rows: Mapping[tuple[str, str], dict]) -> list[dict]:
  """Every pair of a recorded plan (`pairs.read_plan`) with its state in `rows`: dicts with 'task', 'method',
  'summary' (None while unfinished), 'recorded' and 'total' trials."""
  seeds = grid_lib.final_seeds(plan["grid"])
  out = []
  for task, method in plan["pairs"]:
    trials = grid_lib.expand(task, method, plan["grid"], plan["tune_splits"].get(task, 1))
    summary, recorded, total = pair_summary(trials, rows, seeds, plan["final"], plan["grid"])
    out.append(dict(task=task, method=method, summary=summary, recorded=recorded, total=total))
  return out


def _validate(config, tasks: Sequence[str], methods: Sequence[str], grid: Mapping, trial_batch: int | str,
              final: bool) -> tuple[dict, dict[str, int], tuple[int, ...]]:
  """Checks everything a sweep can check before it writes anything: the config, the grid of every pair,
  trial_batch, and that each task's training splits hold a batch. Returns ({pair: trials}, {task: tuning
  splits}, final seeds)."""
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
  if not tasks or not methods:
    raise ConfigError(f"Nothing to sweep: --tasks={','.join(tasks)} --methods={','.join(methods)}; name at least "
                      "one task and one method.")
  runner.check_trial_batch(trial_batch)
  grid_lib.pad_shapes(grid)
  seeds = grid_lib.final_seeds(grid)
  tune_splits = {task: splits.num_tune_splits(config, task) for task in tasks}
  trials = {(t, m): grid_lib.expand(t, m, grid, tune_splits[t]) for t in tasks for m in methods}
  if halving.kind(grid) == "halving":
    if jax.process_count() > 1:  # survivors are carried on the host between rungs, which one process cannot gather
      raise ConfigError("--grid.schedule=halving is not supported by multi-process sweeps yet: run it as one "
                        "process, or as independent processes per pair (--shard).")
    for pair_trials in trials.values():
      halving.resolve(grid, config.optim.epochs, len({t.config_key for t in pair_trials}))
  for pair_trials in trials.values():
    config_checks.validate_config(grid_lib.trial_config(config, pair_trials[0], "tune"))
  for task in tasks:
    _check_batch_fits(config, task, ("tune", "final") if final else ("tune",))
  return trials, tune_splits, seeds


def _check_batch_fits(config, task: str, modes: Sequence[str]) -> None:
  """ConfigError if a training split of `task` is smaller than one batch (the split sizes come from the task's
  split table or list files, without loading images)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.task = task
  d = config.data
  for mode in modes:
    (name, spec), _ = splits.mode_splits(config, mode)
    try:
      size = input_pipeline.num_examples(task, spec, source=d.source, data_dir=d.data_dir, folder_root=d.folder_root)
    except Exception:  # pylint: disable=broad-except
      continue  # data not readable now: training loads it, reports the problem and checks the batch again
    if size < config.optim.batch_size:
      raise ConfigError(f"Config field 'optim.batch_size' = {config.optim.batch_size} is larger than the {name} "
                        f"split of '{task}' ({size} examples), so drop_last leaves no batch: lower "
                        "--config.optim.batch_size.")


def _agree(value: bool) -> bool:
  """Process 0's `value` on every process of a multi-process sweep (they train the same pairs in lockstep)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(multihost_utils.broadcast_one_to_all(np.int32(value)))


def _open_workdir(stack: contextlib.ExitStack, config, workdir: str, plan: dict, lead: bool) -> trial_log.TrialLog:
  """Joins the workdir's sweep processes (process 0 of a multi-process sweep for all of them), checks the
  recorded config and records this process's plan. A recorded config under which no trial finished is replaced
  when no other process runs there (a sweep that failed before its first trial does not block its rerun)."""
  if not lead:
    return trial_log.open_log(config, workdir, write=False, schedule=halving.defining_values(plan["grid"]))
  os.makedirs(workdir, exist_ok=True)
  meta = pairs.meta_lock_path(workdir)
  with workdir_lock.locked(meta):
    fd, alone = workdir_lock.join(workdir, "jpeft.sweep")
    stack.callback(os.close, fd)
    record = trial_log.open_log(config, workdir, replace_unused=alone, lock_path=meta,
                                schedule=halving.defining_values(plan["grid"]))
    pairs.update_plan(workdir, alone=alone, **plan)
  return record


def run_sweep(config, tasks: Sequence[str], methods: Sequence[str], grid: Mapping, workdir: str,
              trial_batch: int | str, final: bool = True, log: Callable[[str], None] = print,
              shard: Optional[pairs.Shard] = None, data: Optional[dict] = None) -> list[dict]:
  """Runs the protocol for this process's (task, method) pairs; returns the summary rows of those it finished.

  Other processes may sweep the same workdir at once (`jpeft.sweep.pairs`): each pair is trained by the
  process holding its lock; a pair another process holds is left to it (logged, no summary row here).

  Args:
    config: base config (data, model, optim; method, lr, wd, peft and seed are set per trial).
    tasks, methods: what to sweep: the pairs tasks x methods, in that order.
    grid: 'lr', 'wd', 'seeds' and per-method grids (see `jpeft.sweep.grid.default_grid`).
    workdir: where trials.jsonl, sweep_config.json, sweep_plan.json, summary.jsonl and summary.csv live;
      rerunning with the same base config resumes (more tasks, methods or grid values included).
    trial_batch: trials trained together in one compiled program; 'auto': as many as fit in memory, per
      shape group (`jpeft.sweep.fit`).
    final: also retrain the winner on train800val200 and evaluate test.
    log: progress messages.
    shard: which pairs this process takes (default: all).
    data: a split cache to read instead of opening the tasks' data (`splits.in_memory_cache`: arrays made in
      memory, e.g. `jpeft.data.synthetic`); default: each task's splits are opened from config.data.
  Returns:
    One summary row per finished pair of this process (selected None where every trial diverged).
  Raises (before writing anything, for what can be checked then):
    ConfigError: a config, grid or batch size the sweep cannot use; the workdir's trials were made under another
      base config.
    GridError: a grid value that cannot describe a sweep.
    TrialLogError: trials.jsonl has a line that is not a trial record, or a row of another config.
    WorkdirLockedError: a run holds the workdir.
  """
  trials, tune_splits, final_seeds = _validate(config, tasks, methods, grid, trial_batch, final)
  grid_dict = grid.to_dict() if hasattr(grid, "to_dict") else dict(grid)
  plan = dict(pairs=list(trials), grid=grid_dict, final=final, tune_splits=tune_splits)
  lead = jax.process_index() == 0
  summaries = []
  with contextlib.ExitStack() as stack:
    record = _open_workdir(stack, config, workdir, plan, lead)
    preloaded = data
    data, data_task = preloaded or {}, None  # one task's splits, shared by its pairs while trained in a row
    for task, method in (shard or pairs.Shard(None, 1)).select(list(trials)):
      claim = pairs.claim(workdir, task, method) if lead else None
      if not _agree(claim is not None):
        log(f"{task}/{method}: held by another process ({pairs.holder(workdir, task, method)}); left to it")
        continue
      if task != data_task and preloaded is None:
        data, data_task = {}, task
      try:
        summaries.append(_run_pair(config, trials[(task, method)], record, workdir, trial_batch, final,
                                   final_seeds, claim, data, log, grid))
      except BaseException:
        if claim is not None:
          claim.release("stopped")
        raise
      if claim is not None:
        claim.release("finished")
    if lead:
      with workdir_lock.locked(pairs.meta_lock_path(workdir)):
        record.refresh()
        recorded = pairs.read_plan(workdir)
        write_summary([p["summary"] for p in collect(recorded, record.rows) if p["summary"]], workdir)
  return summaries


def _run_pair(config, trials: Sequence[grid_lib.Trial], record: trial_log.TrialLog, workdir: str,
              trial_batch: int | str, final: bool, final_seeds: Sequence[int], claim: Optional[pairs.Claim], data: dict,
              log: Callable[[str], None], grid: Mapping) -> dict:
  """Tunes, selects and retrains one (task, method) whose lock this process holds; returns its summary row."""
  task, method = trials[0].task, trials[0].method
  lead = claim is not None
  with (workdir_lock.locked(pairs.meta_lock_path(workdir)) if lead else contextlib.nullcontext()):
    record.refresh()  # rows an earlier holder of the pair recorded (a killed job's, resumed here)

  def record_chunk(rows, predictions):
    if lead:
      _save_predictions(workdir, rows, predictions)
    record.append(rows)

  def progress(stage):
    if claim is None:
      return None
    claim.progress(stage=stage, epoch=0)
    return lambda epoch, epochs: claim.progress(stage=stage, epoch=epoch, epochs=epochs)

  runners: dict = {}  # compiled programs of this method's shape groups, shared by its tune and final runs
  todo = [t for t in trials if not record.has("tune", t)]
  pad = grid_lib.pad_shapes(grid)
  programs, shapes = len(padding.program_groups(config, trials, pad)), len(grid_lib.shape_groups(trials))
  log(f"{task}/{method}: {len(trials)} trials in {programs} shape groups; "
      f"{len(trials) - len(todo)} already finished, training {len(todo)}"
      + (f" ({shapes} shapes padded to the largest: grid.pad_shapes)" if programs < shapes else ""))
  schedule = halving.kind(grid)
  if schedule == "halving":
    plan = halving.resolve(grid, config.optim.epochs, len({t.config_key for t in trials}))
    log(f"{task}/{method}: successive halving, eta {plan.eta}, rungs at epochs {list(plan.rungs)} of {plan.epochs}")
    halving.tune(config, trials, plan, lambda t: record.rows.get(("tune", t.key)), trial_batch, record_chunk, data,
                 runners, on_epoch=progress("tune"), log=log, pad=pad)
  else:
    runner.run_trials(config, todo, "tune", trial_batch, on_chunk=record_chunk, data=data, runners=runners,
                      on_epoch=progress("tune"), log=log, pad=pad)
  tune_rows = [record.get("tune", t) for t in trials]
  _, winner = tune_winner(trials, tune_rows, grid)
  final_rows: list[dict] = []
  if winner is None:
    log(f"{task}/{method}: no finite trial: all {len(trials)} tune trials diverged (non-finite loss), nothing "
        "to select")
  elif final:
    finals = final_trials(trials, winner, final_seeds)
    todo = [t for t in finals if not record.has("final", t)]
    log(f"{task}/{method}: selected {winner}; final on {splits.mode_splits(config, 'final')[0][0]} x "
        f"{len(finals)} seeds, training {len(todo)}")
    runner.run_trials(config, todo, "final", trial_batch, on_chunk=record_chunk, data=data, runners=runners,
                      on_epoch=progress("final"), log=log, pad=pad)
    final_rows = [record.get("final", t) for t in finals]
  return _summary_row(trials, tune_rows, winner, final_rows, schedule)


def write_summary(summaries: Sequence[dict], workdir: str) -> None:
  """summary.jsonl (one JSON row per task x method) and summary.csv (hyperparameters as one JSON column), each
  written under a temporary name and renamed, so a reader never sees half a file."""
  path = os.path.join(workdir, SUMMARY_FILE)
  with errors.writing(path, trial_log.SWEEP_KEPT), open(path + ".tmp", "w") as f:
    for row in summaries:
      f.write(json.dumps(row) + "\n")
  os.replace(path + ".tmp", path)
  fields = ["task", "method", "test_accuracy", "test_std", "val_accuracy", "trainable_params", "num_trials",
            "diverged", "seeds", "selected", "schedule", "tune_trial_epochs"]
  path = os.path.join(workdir, SUMMARY_CSV)
  with errors.writing(path, trial_log.SWEEP_KEPT), open(path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fields, extrasaction="ignore")
    writer.writeheader()
    for row in summaries:
      writer.writerow({k: json.dumps(row.get(k)) if k in ("seeds", "selected") else row.get(k) for k in fields})
  os.replace(path + ".tmp", path)
