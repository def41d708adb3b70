"""Many sweep processes on one workdir (issue 33): three shards train every (task, method) pair exactly once and
their report equals a one-process sweep's; two processes racing for a pair: one trains, one moves on; a process
killed with -9 in the middle of a pair leaves it 'unfinished', and the next run resumes and completes it.

Two tasks named as Mini VTAB tasks, read from the processed-folder fixture (no generation), x two methods
without a grid of their own, one epoch each: the cheapest sweep that has pairs to share."""
import collections
import json
import os
import shutil
import signal
import socket
import sys

import pytest

from .conftest import KILLED_SWEEP, REPO, load_config, tiny_overrides
from jpeft import cli, config_base
from jpeft.sweep import grid, pairs, protocol, report
from tests.helpers import cli_args, run_programs, write_folder_task

TASKS, METHODS = ["mini_count", "mini_digits"], ["linear", "bitfit"]
GRID = {"lr": (1e-3, 1e-2), "wd": (1e-4,), "seeds": (42,)}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mini_folder"))
  write_folder_task(root, noise=200)
  for task in TASKS:
    shutil.copytree(os.path.join(root, "dtd"), os.path.join(root, task))
  return root


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """A compilation cache shared by the module's sweeps, in process or not: each program (one trial per chunk, so
  one train step per method) is compiled once (the numbers are those of the same program either way)."""
  return str(tmp_path_factory.mktemp("cache"))


def _overrides(root, **more):
  return dict(tiny_overrides(root), **{"task": TASKS[0], "optim.epochs": 1, "optim.warmup_epochs": 0, **more})


def _args(root, workdir, cache, tasks=TASKS, methods=METHODS, lrs="1e-3,1e-2"):
  return [sys.executable, "-m", "jpeft.sweep", f"--config={os.path.join(REPO, 'jpeft', 'config_base.py')}",
          *cli_args(_overrides(root)), f"--tasks={','.join(tasks)}", f"--methods={','.join(methods)}",
          f"--workdir={workdir}", "--trial_batch=1", f"--grid.lr={lrs}", "--grid.wd=1e-4",
          "--grid.seeds=42", f"--compilation_cache={cache}"]


def _env():
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  return dict(env, PYTHONPATH=REPO)


def _keys(workdir):
  with open(os.path.join(workdir, "trials.jsonl")) as f:
    return [(row["stage"], row["key"]) for row in map(json.loads, f) if row]


def _report_files(workdir):
  names = ["summary.jsonl", "summary.csv", "results.md", "results.csv"]
  names += [os.path.join("analysis", n) for n in sorted(os.listdir(os.path.join(workdir, "analysis")))
            if n.endswith((".md", ".csv"))]
  out = {}
  for name in names:
    with open(os.path.join(workdir, name)) as f:
      out[name] = f.read().replace(workdir, "<workdir>")
  return out


def test_three_shards_train_each_pair_once_and_report_as_one_process(mini_root, compile_cache, tmp_path):
  one, cache = str(tmp_path / "one"), compile_cache
  with cli.compilation_cache(cache):
    protocol.run_sweep(load_config(_overrides(mini_root)), TASKS, METHODS,
                       config_base.apply_overrides(grid.default_grid(), GRID), one, trial_batch=1, log=lambda _: None)
  report.write(one, log=lambda _: None)

  # The three shards race for the pairs at once, then --report reads what they left: four programs forked from
  # one child that imported JAX and TensorFlow once (tests/program_runner.py).
  shared = str(tmp_path / "shared")
  *shards, status = run_programs([_args(mini_root, shared, cache)[1:] + [f"--shard={shard}"]
                                  for shard in ("0/2", "1/2", "any")]
                                 + [["-m", "jpeft.sweep", f"--workdir={shared}", "--report"]],
                                 env=_env(), waves=[0, 0, 0, 1])
  logs = [p.stdout + p.stderr for p in shards]
  assert [p.returncode for p in shards] == [0, 0, 0], "\n".join(logs)

  keys = _keys(shared)
  assert len(keys) == 4 * 3 and len(set(keys)) == len(keys), "a trial was trained twice"  # 2 tune + 1 final each
  trained = collections.Counter(line.split(":")[0] for log in logs for line in log.splitlines()
                                if "already finished, training 2" in line)
  assert trained == {f"{t}/{m}": 1 for t in TASKS for m in METHODS}, "\n".join(logs)

  assert status.returncode == report.COMPLETE, status.stdout + status.stderr
  assert "4 of 4 pairs finished" in status.stdout
  assert _report_files(shared) == _report_files(one)


# Run between the killed sweep and its rerun: copies trials.jsonl to argv[2], prints the pairs' states (JSON).
_SNAPSHOT = ("import json, shutil, sys; from jpeft.sweep import report; "
             "shutil.copy(sys.argv[1] + '/trials.jsonl', sys.argv[2]); "
             "print(json.dumps([[e['task'], e['method'], e['state']] for e in report.read(sys.argv[1])]))")


@pytest.fixture(scope="module")
def race_then_kill(mini_root, compile_cache, tmp_path_factory):
  """Two processes started together on one pair; the one that trains is killed with -9 right after its first
  trial is recorded, once the other has ended; the report is read; the same command is run again. Four programs
  forked from one child that imported JAX and TensorFlow once (`run_programs`; the two racers at once)."""
  workdir = str(tmp_path_factory.mktemp("race"))
  scratch = tmp_path_factory.mktemp("race_scratch")
  go, killed = str(scratch / "go"), str(scratch / "killed")
  os.makedirs(killed)
  args = _args(mini_root, workdir, compile_cache, tasks=TASKS[:1], methods=["linear"], lrs="1e-3,3e-3,1e-2")
  # Either may win the pair: both run the sweep that kills itself after its first recorded chunk (one trial),
  # once `go` exists, which the other creates as it ends: a kill on that signal, not on a timer, can land
  # neither after the last trial nor before the other has seen the pair held.
  racer = [KILLED_SWEEP, go, *args[3:]]
  *racers, snapshot, rerun = run_programs([racer, racer, ["-c", _SNAPSHOT, workdir, killed], args[1:]], env=_env(),
                                          waves=[0, 0, 1, 2])
  (trainer,) = [p for p in racers if p.returncode == -signal.SIGKILL] or [racers[0]]  # none killed: a test fails
  (mover,) = [p for p in racers if p is not trainer]
  assert snapshot.returncode == 0, snapshot.stderr
  return dict(workdir=workdir, trainer=trainer, mover=mover, killed_keys=_keys(killed),
              states={(t, m): state for t, m, state in json.loads(snapshot.stdout)}, rerun=rerun)


def test_two_processes_racing_for_a_pair_one_trains_one_moves_on(race_then_kill):
  run = race_then_kill
  mover_log = run["mover"].stdout + run["mover"].stderr
  assert run["mover"].returncode == 0, mover_log
  assert (f"{TASKS[0]}/linear: held by another process (pid {run['trainer'].pid} on host" in mover_log)
  assert "training" not in mover_log
  assert "1 of 1 pairs of the sweep have no result yet" in mover_log


def test_a_pair_killed_mid_way_is_named_unfinished_and_resumed(race_then_kill):
  run = race_then_kill
  assert run["trainer"].returncode == -signal.SIGKILL, run["trainer"].stdout + run["trainer"].stderr
  assert len(run["killed_keys"]) == 1, "the kill should land right after the first tune trial"
  state = run["states"][(TASKS[0], "linear")]
  assert state.startswith("unfinished at tune epoch 1 of 1"), state
  assert f"{len(run['killed_keys'])} of 4 trials recorded; last run by pid {run['trainer'].pid}" in state
  rerun = run["rerun"]
  assert rerun.returncode == 0, rerun.stdout + rerun.stderr
  assert f"3 trials in 1 shape groups; {len(run['killed_keys'])} already finished" in rerun.stdout
  keys = _keys(run["workdir"])
  assert keys[:len(run["killed_keys"])] == run["killed_keys"] and len(keys) == len(set(keys)) == 4
  (entry,) = report.read(run["workdir"])
  assert entry["state"] is None and entry["summary"]["test_accuracy"] is not None


def test_report_names_never_started_and_running_pairs(mini_root, tmp_path):
  """Without training: a plan of two pairs, one held by a live process (this one), one never started."""
  workdir = str(tmp_path)
  pairs.update_plan(workdir, [(TASKS[0], "linear"), (TASKS[1], "linear")],
                    config_base.apply_overrides(grid.default_grid(), GRID).to_dict(), True, {t: 1 for t in TASKS},
                    alone=True)
  claim = pairs.claim(workdir, TASKS[0], "linear")  # as a live sweep process holds it (flock: per open file)
  claim.progress(stage="tune", epoch=0, epochs=1)
  try:
    lines = []
    entries = report.write(workdir, analyse=False, log=lines.append)
  finally:
    claim.release("stopped")
  assert lines[0] == (f"{TASKS[0]}/linear: running on host {socket.gethostname()} (pid {os.getpid()}), at tune epoch "
                      "0 of 1; 0 of 3 trials recorded")
  assert lines[1] == f"{TASKS[1]}/linear: never started"
  assert report.status(entries) == report.UNFINISHED
  assert report.read(workdir)[0]["state"].startswith("unfinished at tune epoch 0 of 1 (0 of 3 trials recorded; last "
                                                      f"run by pid {os.getpid()}")
