"""Many sweep processes on one workdir: which (task, method) pairs a process takes, and each pair's state.

A sweep is a list of independent (task, method) pairs. Processes that share a workdir (a SLURM job array on a
shared file system, or reruns) coordinate through files in it:

  <workdir>/sweep_plan.json            the sweep's pairs in order, its grid, whether it retrains the winners
                                       (`final`) and each task's tuning splits: what `--report` summarises
                                       from, without a config.
  <workdir>/pairs/<task>/<method>.lock flock held by the process training that pair, so no pair is trained
                                       twice at once; it records that process and its progress (stage, epoch),
                                       and keeps the record when the process ends (killed included), which is
                                       how `--report` names a pair left unfinished.
  <workdir>/.jpeft.meta.lock           held for the short writes the processes share (trials.jsonl appends,
                                       the plan, sweep_config.json, the summary and tables).

`Shard` says which pairs a process takes: pair i of the plan goes to shard i mod N (`--shard=K/N`, by default
SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT), or every pair (`--shard=any`, one
process); a pair another process holds is left to it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping, Optional, Sequence

from jpeft import workdir_lock
from jpeft.train import results
from jpeft.train.errors import ConfigError

PLAN_FILE = "sweep_plan.json"
PAIRS_DIR = "pairs"
META_LOCK = ".jpeft.meta.lock"
_CLAIM_TRIES = 3  # a --report peeking at a lock holds it for microseconds: retry before leaving a pair


@dataclasses.dataclass(frozen=True)
class Shard:
  """Pairs i with i % count == index; index None: every pair (`--shard=any`)."""
  index: Optional[int]
  count: int
  source: str = "--shard"

  def select(self, pairs: Sequence) -> list:
    return list(pairs) if self.index is None else [p for i, p in enumerate(pairs) if i % self.count == self.index]

  def __str__(self) -> str:
    return "any" if self.index is None else f"{self.index}/{self.count}"


def parse_shard(value: Optional[str], environ: Mapping[str, str] = os.environ) -> Shard:
  """The shard of `--shard=value`: 'K/N' (0 <= K < N), 'any', or unset: from SLURM_ARRAY_TASK_ID and
  SLURM_ARRAY_TASK_COUNT (K counted from SLURM_ARRAY_TASK_MIN) when both are set, else every pair.

  Raises ConfigError naming the value and the accepted forms.
  """
  if value in (None, ""):
    task_id, count = environ.get("SLURM_ARRAY_TASK_ID"), environ.get("SLURM_ARRAY_TASK_COUNT")
    if task_id is None or count is None:
      return Shard(None, 1, "default")
    try:
      index, count = int(task_id) - int(environ.get("SLURM_ARRAY_TASK_MIN", "0")), int(count)
    except ValueError:
      raise ConfigError(f"SLURM_ARRAY_TASK_ID={task_id!r} / SLURM_ARRAY_TASK_COUNT={count!r} are not integers; "
                        "pass --shard=K/N (or --shard=any) explicitly.") from None
    if not 0 <= index < count:
      raise ConfigError(f"SLURM_ARRAY_TASK_ID={task_id} minus SLURM_ARRAY_TASK_MIN="
                        f"{environ.get('SLURM_ARRAY_TASK_MIN', '0')} is not in [0, {count}): submit the array as "
                        "--array=0-<N-1> (or 1-<N>), or pass --shard=K/N explicitly.")
    return Shard(index, count, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
  if value == "any":
    return Shard(None, 1)
  index, slash, count = value.partition("/")
  try:
    index, count = int(index), int(count)
    if not slash or count < 1 or not 0 <= index < count:
      raise ValueError
  except ValueError:
    raise ConfigError(f"--shard={value} is not usable: give K/N with 0 <= K < N (this process takes pairs "
                      "K, K+N, K+2N, ... of the sweep), or 'any' (every pair not held by another process).") from None
  return Shard(index, count)


def lock_path(workdir: str, task: str, method: str) -> str:
  return os.path.join(workdir, PAIRS_DIR, task, f"{method}.lock")


def meta_lock_path(workdir: str) -> str:
  return os.path.join(workdir, META_LOCK)


class Claim:
  """A pair's lock, held: `progress(...)` records how far training got, for `--report`; `release()` frees it."""

  def __init__(self, fd: int, task: str, method: str):
    self.fd, self.task, self.method = fd, task, method
    self.info = dict(workdir_lock.holder_info(), state="running")
    workdir_lock.write_info(fd, self.info)

  def progress(self, **fields) -> None:
    self.info.update(fields, updated=time.time())
    workdir_lock.write_info(self.fd, self.info)

  def release(self, state: str) -> None:
    """Records `state` ('finished' or 'stopped') and frees the pair."""
    try:
      self.progress(state=state)
    finally:
      os.close(self.fd)


def claim(workdir: str, task: str, method: str) -> Optional[Claim]:
  """Takes the pair's lock without waiting; None when another process holds it."""
  path = lock_path(workdir, task, method)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  for attempt in range(_CLAIM_TRIES):
    if attempt:
      time.sleep(0.1 * attempt)
    fd = workdir_lock.try_lock(path)
    if fd is not None:
      return Claim(fd, task, method)
  return None


def holder(workdir: str, task: str, method: str) -> str:
  """Who holds (or last held) the pair, in words."""
  return workdir_lock.describe(workdir_lock.read_info(lock_path(workdir, task, method)))


def read_plan(workdir: str) -> Optional[dict]:
  """The recorded plan ({'pairs': [[task, method], ...], 'grid', 'final', 'tune_splits'}), or None if none."""
  path = os.path.join(workdir, PLAN_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      plan = json.load(f)
    plan["pairs"] = [tuple(p) for p in plan["pairs"]]
    return plan
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"'{path}' is unreadable ({type(e).__name__}: {e}). Delete it and run the sweep's command "
                      "again: it is written again, and no finished trial is trained again.") from None


def update_plan(workdir: str, pairs: Sequence[tuple[str, str]], grid: dict, final: bool,
                tune_splits: Mapping[str, int], alone: bool) -> dict:
  """Records this process's plan (call under the meta lock): its pairs are added to the recorded ones (a
  sweep widened by a rerun keeps the earlier pairs), and its grid and `final` replace the recorded ones
  when no other process runs on the workdir (`alone`); while others run they must be the same.

  Raises ConfigError naming what differs from the running processes' plan.
  """
  recorded = read_plan(workdir)
  grid = json.loads(json.dumps(grid))  # tuples as lists, as recorded
  if recorded is not None and not alone:
    for name, mine, theirs in (("--grid", grid, recorded["grid"]), ("--final", final, recorded["final"])):
      if mine != theirs:
        raise ConfigError(
            f"Another process is sweeping the workdir '{workdir}' with another {name} ({PLAN_FILE}: "
            f"{json.dumps(theirs)[:200]}; here: {json.dumps(mine)[:200]}). Every job of one sweep takes the same "
            "--grid and --final flags: start this job with the same flags as the others, or wait for them to end.")
  plan = dict(pairs=list(dict.fromkeys([*(recorded or {}).get("pairs", []), *map(tuple, pairs)])), grid=grid,
              final=final, tune_splits={**(recorded or {}).get("tune_splits", {}), **tune_splits})
  if plan != recorded:
    results.write_json(os.path.join(workdir, PLAN_FILE), plan)
  return plan


def pair_state(workdir: str, task: str, method: str, finished: int, total: int) -> str:
  """The state of a pair whose trials are not all recorded: 'never started', 'running on host h (pid p) ...',
  or 'unfinished at <stage> epoch e of E ...' (`finished` of `total` trials recorded)."""
  path = lock_path(workdir, task, method)
  info = workdir_lock.read_info(path)
  fd = workdir_lock.try_lock(path, shared=True, create=False) if info is not None else None
  running = info is not None and fd is None
  if fd is not None:
    os.close(fd)
  if info is None and finished == 0:
    return "never started"
  done = f"{finished} of {total} trials recorded"
  where = ""
  if info and info.get("stage"):
    where = f"{info['stage']} epoch {info.get('epoch', 0)} of {info.get('epochs', '?')}"
  if running:
    return f"running on host {info.get('host')} (pid {info.get('pid')}){', at ' + where if where else ''}; {done}"
  last = f"; last run by pid {info.get('pid')} on host {info.get('host')}" if info else ""
  if info and info.get("state") == "finished":  # finished under a narrower grid, widened since
    return f"not run with the current grid ({done}{last}): run any job of this sweep again to train the rest"
  return f"unfinished at {where or 'its start'} ({done}{last}): run any job of this sweep again to resume it"
