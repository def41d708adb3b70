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
import subprocess
import sys
import time

import pytest

from .conftest import REPO, load_config, tiny_overrides
from jpeft import cli, workdir_lock
from jpeft.sweep import grid, pairs, protocol, report
from tests.helpers import cli_args, write_folder_task

TASKS, METHODS = ["mini_count", "mini_digits"], ["linear", "bitfit"]
GRID = {"lr": (1e-3, 1e-2), "wd": (1e-4,), "seeds": (42,)}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mini_folder"))
  write_folder_task(root, noise=200)
  for task in TASKS:
    shutil.copytree(os.path.join(root, "dtd"), os.path.join(root, task))
  return root


def _overrides(root, **more):
  return dict(tiny_overrides(root), **{"task": TASKS[0], "optim.epochs": 1, "optim.warmup_epochs": 0, **more})


def _args(root, workdir, cache, tasks=TASKS, methods=METHODS, lrs="1e-3,1e-2", trial_batch=2):
  # A compilation cache shared by the test's processes: each program is compiled once (the numbers are those
  # of the same program either way).
  return [sys.executable, "-m", "jpeft.sweep", f"--config={os.path.join(REPO, 'jpeft', 'config_base.py')}",
          *cli_args(_overrides(root)), f"--tasks={','.join(tasks)}", f"--methods={','.join(methods)}",
          f"--workdir={workdir}", f"--trial_batch={trial_batch}", f"--grid.lr={lrs}", "--grid.wd=1e-4",
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


def test_three_shards_train_each_pair_once_and_report_as_one_process(mini_root, tmp_path):
  one, cache = str(tmp_path / "one"), str(tmp_path / "cache")
  with cli.compilation_cache(cache):
    protocol.run_sweep(load_config(_overrides(mini_root)), TASKS, METHODS,
                       grid.apply_overrides(grid.default_grid(), GRID), one, trial_batch=2, log=lambda _: None)
  report.write(one, log=lambda _: None)

  shared = str(tmp_path / "shared")
  procs = [subprocess.Popen(_args(mini_root, shared, cache) + [f"--shard={shard}"], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for shard in ("0/2", "1/2", "any")]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(logs)

  keys = _keys(shared)
  assert len(keys) == 4 * 3 and len(set(keys)) == len(keys), "a trial was trained twice"  # 2 tune + 1 final each
  trained = collections.Counter(line.split(":")[0] for log in logs for line in log.splitlines()
                                if "already finished, training 2" in line)
  assert trained == {f"{t}/{m}": 1 for t in TASKS for m in METHODS}, "\n".join(logs)

  status = subprocess.run([sys.executable, "-m", "jpeft.sweep", f"--workdir={shared}", "--report"], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)
  assert status.returncode == report.COMPLETE, status.stdout + status.stderr
  assert "4 of 4 pairs finished" in status.stdout
  assert _report_files(shared) == _report_files(one)


@pytest.fixture(scope="module")
def race_then_kill(mini_root, tmp_path_factory):
  """Two processes started together on one pair; the one that trains is killed with -9 after its first trial;
  the report is read; the same command is run again."""
  workdir = str(tmp_path_factory.mktemp("race"))
  args = _args(mini_root, workdir, str(tmp_path_factory.mktemp("cache")), tasks=TASKS[:1], methods=["linear"],
               lrs="1e-3,3e-3,1e-2", trial_batch=1)
  procs = [subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for _ in range(2)]
  trials_path = os.path.join(workdir, "trials.jsonl")
  lock = pairs.lock_path(workdir, TASKS[0], "linear")
  deadline = time.time() + 400
  while (workdir_lock.read_info(lock) or {}).get("state") != "running" and time.time() < deadline:
    time.sleep(0.05)
  (trainer,) = [p for p in procs if p.pid == workdir_lock.read_info(lock)["pid"]]
  (mover,) = [p for p in procs if p is not trainer]
  mover.wait(timeout=400)  # before the kill: it must find the pair held, not left unfinished
  while not (os.path.exists(trials_path) and os.path.getsize(trials_path)) and time.time() < deadline:
    time.sleep(0.05)
  trainer.send_signal(signal.SIGKILL)
  trainer.wait()
  mover_log = mover.communicate()[0]
  killed_keys = _keys(workdir)
  states = {(e["task"], e["method"]): e["state"] for e in report.read(workdir)}
  rerun = subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
  return dict(workdir=workdir, trainer=trainer, mover=mover, mover_log=mover_log, killed_keys=killed_keys,
              states=states, rerun=rerun)


def test_two_processes_racing_for_a_pair_one_trains_one_moves_on(race_then_kill):
  run = race_then_kill
  assert run["mover"].returncode == 0, run["mover_log"]
  assert (f"{TASKS[0]}/linear: held by another process (pid {run['trainer'].pid} on host" in run["mover_log"])
  assert "training" not in run["mover_log"]
  assert "1 of 1 pairs of the sweep have no result yet" in run["mover_log"]


def test_a_pair_killed_mid_way_is_named_unfinished_and_resumed(race_then_kill):
  run = race_then_kill
  assert 0 < len(run["killed_keys"]) < 3, "the kill should land after the first tune trial and before the last"
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
                    grid.apply_overrides(grid.default_grid(), GRID).to_dict(), True, {t: 1 for t in TASKS}, alone=True)
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
