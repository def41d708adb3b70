"""Successive halving (`--grid.schedule=halving`): the tune stage of a (task, method) pair at a fraction of its cost.

As the synchronous successive halving of ASHA / Hyperband: every setting of the pair's grid trains to the first
rung's epoch and is evaluated on val200; the best 1/eta of the settings (at least one; ranked by their mean
accuracy over seeds and tuning splits, settings with a diverged trial last, ties to grid order) continue from
where they stopped, to the next rung, and so on, until the survivors finish the full epochs. The learning-rate
schedule spans the full epochs whether or not a trial is stopped, so a trial that survives every rung trains
exactly as under `schedule=full`; selection is then the study's (`protocol.select`) among the trials that
finished. The final retrain is unchanged.

Rungs (`grid.halving_rungs`, epochs at which settings are cut): by default round(epochs / eta^k) for
k = s, ..., 1, where s = ceil(log_eta(settings)) cuts bring the pair's settings to one; duplicates and epochs
below 1 are dropped. Every trial gets one row in trials.jsonl when it stops: `halted` (cut at a rung),
`stopped_epoch`, `rung_evals` (its val accuracy, loss and non-finite steps so far at each rung it reached) and
`halving` (the pair's eta, rungs and epochs). Which settings survive is a function of those rows only
(`finishers`), so a killed pair resumes to the same result, and `--report` recomputes it without a config.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jpeft import interrupts
from jpeft.sweep import fit, padding, runner
from jpeft.sweep.grid import GridError, Trial

SCHEDULES = ("full", "halving")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A pair's halving schedule: cut at `rungs` (epochs, increasing, each < `epochs`), keeping 1/`eta`."""
  eta: int
  rungs: tuple[int, ...]
  epochs: int

  def as_dict(self) -> dict:
    return dict(eta=self.eta, rungs=list(self.rungs), epochs=self.epochs)


def kind(grid: Mapping) -> str:
  """The grid's schedule, 'full' or 'halving' (GridError naming any other value); grids recorded before
  schedules existed are 'full'."""
  value = grid.get("schedule", "full") if hasattr(grid, "get") else "full"
  if value not in SCHEDULES:
    raise GridError(f"Grid entry 'schedule' has the value {value!r}: use 'full' (the study's protocol: every "
                    "trial trains every epoch) or 'halving' (successive halving of the tune stage).")
  return value


def defining_values(grid: Mapping) -> dict[str, Any]:
  """The grid's schedule fields that decide which trials train how far ({} for 'full', so sweeps recorded
  before schedules existed keep their hash): recorded beside the base config (`trial_log`)."""
  if kind(grid) == "full":
    return {}
  rungs = grid.get("halving_rungs", ())
  return {"grid.schedule": "halving", "grid.halving_eta": grid.get("halving_eta", 2),
          "grid.halving_rungs": list(rungs) if isinstance(rungs, (list, tuple)) else [rungs]}


def keep(count: int, eta: int) -> int:
  """How many of `count` settings go on to the next rung: the best count // eta, at least one."""
  return max(1, count // eta)


def resolve(grid: Mapping, epochs: int, settings: int) -> Schedule:
  """The halving schedule of a pair with `settings` hyperparameter settings trained for `epochs` epochs.

  Raises GridError naming the value: an eta that is not an integer >= 2, a rung that is not an integer in
  [1, epochs), or rungs not strictly increasing.
  """
  eta = grid.get("halving_eta", 2)
  if not isinstance(eta, int) or isinstance(eta, bool) or eta < 2:
    raise GridError(f"Grid entry 'halving_eta' has the value {eta!r}: it must be an integer >= 2 (each rung "
                    "keeps the best 1/eta of the settings), e.g. --grid.halving_eta=2.")
  given = grid.get("halving_rungs", ())
  given = tuple(given) if isinstance(given, (list, tuple)) else (given,)
  for rung in given:
    if not isinstance(rung, int) or isinstance(rung, bool) or not 1 <= rung < epochs:
      raise GridError(f"Grid entry 'halving_rungs' has the value {rung!r}: rungs are the epochs at which settings "
                      f"are cut, integers in [1, {epochs}) for {epochs} epochs (--config.optim.epochs), e.g. "
                      f"--grid.halving_rungs={max(1, epochs // 4)},{max(1, epochs // 2)}; empty for the default.")
  if list(given) != sorted(set(given)):
    raise GridError(f"Grid entry 'halving_rungs' has the value {','.join(map(str, given))}: give the rungs' epochs "
                    "strictly increasing, e.g. --grid.halving_rungs=2,5.")
  if given:
    return Schedule(eta, given, epochs)
  cuts, alive = 0, settings
  while alive > 1:
    alive, cuts = keep(alive, eta), cuts + 1
  rungs = sorted({round(epochs / eta**k) for k in range(1, cuts + 1)} - {0, epochs})
  return Schedule(eta, tuple(r for r in rungs if r < epochs), epochs)


def _rung_eval(row: Optional[Mapping], epoch: int) -> Optional[Mapping]:
  """`row`'s evaluation at the rung `epoch` (its `rung_evals` entry), or None if it has none there."""
  if row is None:
    return None
  for entry in row.get("rung_evals", ()):
    if entry["epoch"] == epoch:
      return entry
  return None


def covers(row: Optional[Mapping], epoch: int, schedule: Schedule) -> bool:
  """Whether a recorded row holds what the schedule needs of its trial at `epoch` (a rung's evaluation, or the
  finished training at the last epoch)."""
  if row is None:
    return False
  if epoch == schedule.epochs:
    return row.get("stopped_epoch") == schedule.epochs
  return _rung_eval(row, epoch) is not None


def survivors(settings: Sequence[str], rows: Mapping[str, Sequence[Mapping]], epoch: int, eta: int) -> list[str]:
  """The settings (config keys, grid order) that go on past the rung at `epoch`.

  rows: {config key: its trials' rows, each with a `rung_evals` entry at `epoch`}. A setting ranks by its mean
  accuracy there; one with a trial that diverged by then (non-finite steps under nan_policy 'stop') ranks after
  every finite one and never goes on; ties go to the setting first in grid order.
  """
  scored = []
  for index, key in enumerate(settings):
    evals = [_rung_eval(r, epoch) for r in rows[key]]
    diverged = any(r["diverged"] and e["nonfinite_steps"] > 0 for r, e in zip(rows[key], evals))
    scored.append((diverged, -float(np.mean([e["accuracy"] for e in evals])), index, key))
  ranked = [s for s in sorted(scored) if not s[0]]
  return sorted((s[3] for s in ranked[:keep(len(settings), eta)]), key=settings.index)


def finishers(trials: Sequence[Trial], rows: Mapping[str, Optional[Mapping]], schedule: Schedule) -> Optional[list]:
  """The settings that finish every rung, recomputed from the recorded `rows` ({trial key: row or None}), or
  None while a trial the schedule needs lacks its row (an unfinished pair)."""
  by_setting: dict[str, list[Trial]] = {}
  for trial in trials:
    by_setting.setdefault(trial.config_key, []).append(trial)
  alive = list(by_setting)
  for epoch in (*schedule.rungs, schedule.epochs):
    if not all(covers(rows.get(t.key), epoch, schedule) for key in alive for t in by_setting[key]):
      return None
    if epoch < schedule.epochs:
      alive = survivors(alive, {k: [rows[t.key] for t in by_setting[k]] for k in alive}, epoch, schedule.eta)
  return alive


def trial_epochs(rows: Sequence[Mapping]) -> int:
  """Epochs trained by the trials of `rows` (their stopped epoch under halving, else every epoch trained)."""
  return sum(r.get("stopped_epoch", r["evals"][-1]["epoch"] if r.get("evals") else 0) for r in rows)


def tune(config, trials: Sequence[Trial], schedule: Schedule, recorded: Callable[[Trial], Optional[dict]],
         trial_batch: int | str, on_chunk: Callable[[list[dict], dict], None], data: dict, runners: dict,
         on_epoch: Optional[Callable[[int, int], None]] = None, log: Callable[[str], None] = print,
         pad: bool = False) -> None:
  """Runs the tune stage of one pair under `schedule`, recording each trial when it stops (`on_chunk`).

  recorded: a trial's recorded tune row or None; what a row covers is not trained again (a resumed pair).
  Survivors of a rung continue from their state in memory; a trial the schedule needs past its recorded row
  (a pair killed between rungs, or a grid widened since) is trained again from its start.
  pad: trials differing only in paddable shape fields share a program (`padding.program_groups`); a survivor may
  continue in another program of its method than the one it stopped in (its state is resized, `GroupRunner.start`).
  """
  by_setting: dict[str, list[Trial]] = {}
  for trial in trials:
    by_setting.setdefault(trial.config_key, []).append(trial)
  alive, states = list(by_setting), {}
  for epoch in (*schedule.rungs, schedule.epochs):
    last = epoch == schedule.epochs
    members = [t for key in alive for t in by_setting[key]]
    todo = [t for t in members if not covers(recorded(t), epoch, schedule)]
    fresh: dict[str, tuple[dict, np.ndarray]] = {}  # key -> (row, val logits) of trials trained to this rung
    labels = None
    for shape, group in padding.program_groups(config, todo, pad):
      program = runner.program(config, shape, group, data, runners, pad=pad)
      size = fit.choose(program, len(group), log) if trial_batch == fit.AUTO else trial_batch
      by_start: dict[tuple, list[Trial]] = {}  # a chunk shares its tuning split and its epoch
      for trial in group:
        start = states[trial.key].epoch if trial.key in states else 0
        by_start.setdefault((trial.tune_split, start), []).append(trial)
      for (_, start), chunk_trials in by_start.items():
        for i in range(0, len(chunk_trials), size):
          part = chunk_trials[i:i + size]
          with interrupts.deferred(enabled=jax.process_count() == 1) as stop:
            chunk = program.start(part, "tune", [states[t.key] for t in part] if start else None)
            program.advance(chunk, epoch, on_epoch, stop, rung=not last)
          rows, predictions = program.rows(chunk)
          labels = predictions["labels"]
          for trial, row, logits, state in zip(part, rows, predictions["logits"],
                                               program.detach(chunk) if not last else [None] * len(part)):
            fresh[trial.key] = (row, logits)
            states[trial.key] = state
    current = {t.key: fresh[t.key][0] if t.key in fresh else recorded(t) for t in members}
    kept = alive if last else survivors(alive, {k: [current[t.key] for t in by_setting[k]] for k in alive},
                                        epoch, schedule.eta)
    stopped = [t for t in members if t.key in fresh and (last or t.config_key not in kept)]
    if stopped:
      rows = [dict(fresh[t.key][0], stopped_epoch=epoch, halted=not last, halving=schedule.as_dict())
              for t in stopped]
      on_chunk(rows, dict(logits=np.stack([fresh[t.key][1] for t in stopped]), labels=labels))
    for trial in members:
      if trial.config_key not in kept:
        states.pop(trial.key, None)
    if not last:
      log(f"{trials[0].task}/{trials[0].method}: rung at epoch {epoch} of {schedule.epochs}: {len(kept)} of "
          f"{len(alive)} settings go on")
    alive = kept
