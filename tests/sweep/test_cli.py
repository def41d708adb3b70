"""A small sweep through the CLI: 2 methods x 4 trials on the fixture task, killed once and resumed.

Checks: selection picks the setting with the best val accuracy (mean over seeds); vmapped trials equal the
same trials run alone by the trainer; a restarted sweep skips what the killed one finished; tables and every
trial's predictions are written. Bad input fails in one line: a bad grid, a missing or broken config file, a
workdir a run is using (two sweeps share a workdir pair by pair: test_shards).
"""
import json
import os
import signal
import sys

import numpy as np
import pytest

from .conftest import KILLED_SWEEP, REPO, load_config, tiny_overrides
from jpeft import cli, workdir_lock
from jpeft.sweep import grid
from jpeft.train import trainer
from tests.helpers import bad_config_files, missing_config_error, run_cases, run_programs

PYTHON = sys.executable


def _args(folder_root: str, workdir: str) -> list[str]:
  config = [f"--config.{k}={v}" for k, v in tiny_overrides(folder_root).items()]
  return [PYTHON, "-m", "jpeft.sweep", f"--config={os.path.join(REPO, 'jpeft', 'config_base.py')}", *config,
          "--tasks=dtd", "--methods=lora,linear", f"--workdir={workdir}", "--trial_batch=2",
          "--grid.lr=1e-3,1e-2", "--grid.wd=1e-4",
          # Two seeds: per-trial init and data order, and the spread of the final runs. lora and linear (the
          # cheapest second method to compile; test_runner checks adapter scales folded into one program): 2 lr x
          # 2 seeds each. Chunks of 2 trials (the seeds of one setting: mixed seeds) make one train program per
          # method for tune and final alike.
          "--grid.seeds=42,43", "--grid.lora.rank=4"]


def _read_rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def sweep(folder_root, tmp_path_factory):
  """Runs the CLI killed with -9 right after its first recorded chunk (2 of lora's 4 tune trials: a kill that
  cannot land late, in the middle of a pair), snapshots trials.jsonl, runs it again; returns what each run left.
  The three programs run one after the other, forked from one child that imported JAX and TensorFlow once
  (`run_programs`)."""
  workdir = str(tmp_path_factory.mktemp("sweep"))
  path, snapshot = os.path.join(workdir, "trials.jsonl"), str(tmp_path_factory.mktemp("killed") / "trials.jsonl")
  # The restart loads what the killed run compiled (same programs), as a user's restart would with the default
  # compilation cache; it keeps the test short.
  cache = str(tmp_path_factory.mktemp("jax_cache"))
  args = _args(folder_root, workdir)[1:] + [f"--compilation_cache={cache}"]
  killed, _, second = run_programs([
      [KILLED_SWEEP, "", *args[2:]],
      ["-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])", path, snapshot],
      args])
  assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
  assert second.returncode == 0, second.stdout + second.stderr
  return dict(workdir=workdir, before=_read_rows(snapshot), after=_read_rows(path),
              log=second.stdout + second.stderr, cache=cache)


def test_restart_skips_finished_trials(sweep):
  before, after = sweep["before"], sweep["after"]
  keys = [(r["stage"], r["key"]) for r in after]
  assert 0 < len(before) < len(after), "the kill should land after the first chunk and before the end"
  assert len(keys) == len(set(keys)), "a finished trial was trained again"
  assert after[:len(before)] == before  # the killed run's rows are kept as they were
  finished_lora = sum(r["method"] == "lora" and r["stage"] == "tune" for r in before)
  assert f"dtd/lora: 4 trials in 1 shape groups; {finished_lora} already finished" in sweep["log"]
  tune = [r for r in after if r["stage"] == "tune"]
  assert sorted(r["method"] for r in tune) == ["linear"] * 4 + ["lora"] * 4


def test_selection_picks_best_val_and_retrains_it(sweep):
  rows = sweep["after"]
  with open(os.path.join(sweep["workdir"], "summary.jsonl")) as f:
    summaries = {s["method"]: s for s in map(json.loads, f)}
  for method in ("lora", "linear"):
    tune = [r for r in rows if r["method"] == method and r["stage"] == "tune"]
    by_config = {}
    for r in tune:
      by_config.setdefault(r["config_key"], []).append(r["accuracy"])
    means = {k: np.mean(v) for k, v in by_config.items()}
    best = max(means.values())
    winner = next(k for k in by_config if means[k] == best)  # first in grid order on ties
    final = [r for r in rows if r["method"] == method and r["stage"] == "final"]
    assert {r["config_key"] for r in final} == {winner}
    assert sorted(r["seed"] for r in final) == [42, 43]
    assert all(r["eval_split"] == "test" for r in final)
    summary = summaries[method]
    assert summary["val_accuracy"] == pytest.approx(best)
    assert summary["test_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in final]))
    assert summary["test_std"] == pytest.approx(np.std([r["accuracy"] for r in final]))
  accuracies = {r["accuracy"] for r in rows if r["stage"] == "tune"}
  assert len(accuracies) > 1, "every trial tied: the fixture task no longer separates the settings"


def test_final_predictions_saved_per_seed(sweep):
  """Each final row names its test predictions file, whose argmax accuracy is the row's accuracy."""
  final = [r for r in sweep["after"] if r["stage"] == "final"]
  assert len(final) == 4
  for row in final:
    saved = np.load(os.path.join(sweep["workdir"], row["predictions"]))
    assert row["predictions"] == os.path.join("predictions", "dtd", f"{row['method']}_seed{row['seed']}.npz")
    assert saved["logits"].shape == (len(saved["labels"]), 47)
    assert np.mean(saved["logits"].argmax(-1) == saved["labels"]) == pytest.approx(row["accuracy"])


def test_val_predictions_saved_per_trial(sweep):
  """Each tune row names its own val200 predictions file, whose argmax accuracy is the row's val accuracy."""
  tune = [r for r in sweep["after"] if r["stage"] == "tune"]
  assert len({r["predictions"] for r in tune}) == len(tune) == 8
  for row in tune:
    assert row["predictions"].startswith(os.path.join("predictions", "dtd", "val", f"{row['method']}_"))
    assert row["predictions"].endswith(f"_seed{row['seed']}.npz")
    saved = np.load(os.path.join(sweep["workdir"], row["predictions"]))
    assert saved["logits"].shape == (len(saved["labels"]), 47)
    assert np.mean(saved["logits"].argmax(-1) == saved["labels"]) == pytest.approx(row["accuracy"])


def test_tables_and_plot_written(sweep):
  workdir = sweep["workdir"]
  with open(os.path.join(workdir, "results.md")) as f:
    table = f.read()
  assert "| lora |" in table and "| linear |" in table and "study natural" in table
  assert os.path.getsize(os.path.join(workdir, "accuracy_vs_params.png")) > 1000


def test_vmapped_trial_equals_trainer_run(sweep, folder_root, tmp_path):
  """A trial with a seed other than config.seed (own init and data order, chunk with mixed seeds) ends where
  `trainer.run` of that trial's config ends. (test_runner checks a shared-batch chunk with folded scales.)"""
  trial = grid.Trial("dtd", "lora", 1e-2, 1e-4, (("lora.rank", 4),), 43)
  row = next(r for r in sweep["after"] if r["stage"] == "tune" and r["key"] == trial.key)
  config = grid.trial_config(load_config(tiny_overrides(folder_root)), trial, "tune", fold=False)
  with cli.compilation_cache(sweep["cache"]):  # the model's init programs are the sweep's: loaded, not compiled
    alone = trainer.run(config, str(tmp_path))
  assert [e["epoch"] for e in alone["evals"]] == [e["epoch"] for e in row["evals"]]
  for mine, theirs in zip(row["evals"], alone["evals"]):
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-4)
    assert mine["accuracy"] == theirs["accuracy"]


BAD_GRIDS = [
    ("--grid.lr=0.0,1e-2", "jpeft.sweep: error: Grid entry 'lr' has the value 0.0"),
    # --grid overrides are applied when the flag is defined (at import), before absl parses the flags.
    ("--grid.lora.alpha=1,2", "jpeft.sweep: error: --grid.lora.alpha: lora has no field 'alpha'; its fields are "
                              "rank"),
]
BAD_CONFIGS = [
    (None, missing_config_error("jpeft.sweep")),
    ("def get_config(:\n", "failed to load: SyntaxError at line 1"),
]


@pytest.fixture(scope="module")
def bad_input(folder_root, tmp_path_factory) -> dict:
  """{case: (completed process, its workdir, config path)} for every bad-input case below (tests.helpers.run_cases)."""
  tmp = tmp_path_factory.mktemp("bad_input")
  cases = {}
  for i, (grid_flag, _) in enumerate(BAD_GRIDS):
    workdir = str(tmp / f"grid{i}")
    cases[("grid", i)] = (_args(folder_root, workdir)[1:] + [grid_flag], workdir, None)
  for i, path in enumerate(bad_config_files(tmp, [content for content, _ in BAD_CONFIGS])):
    workdir = str(tmp / f"config{i}")
    args = [f"--config={path}" if a.startswith("--config=") else a for a in _args(folder_root, workdir)[1:]]
    cases[("config", i)] = (args, workdir, path)
  locked = str(tmp / "locked")
  os.makedirs(locked)
  cases["locked"] = ([os.path.join("experiments", "mini_study.py"), f"--workdir={locked}", "--tasks=mini_count",
                     "--methods=linear"], locked, None)
  with workdir_lock.hold(locked):
    return run_cases(cases)


@pytest.mark.parametrize("index", range(len(BAD_GRIDS)), ids=[flag for flag, _ in BAD_GRIDS])
def test_bad_grid_is_one_line_error(bad_input, index):
  proc, workdir, _ = bad_input[("grid", index)]
  assert proc.returncode == 1
  assert BAD_GRIDS[index][1] in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(os.path.join(workdir, "trials.jsonl"))


def test_mini_study_on_a_workdir_in_use_exits_1(bad_input):
  proc, workdir, _ = bad_input["locked"]
  assert proc.returncode == 1
  assert f"mini_study: error: The workdir '{workdir}' is in use by another" in proc.stderr
  assert "Traceback" not in proc.stderr and not os.path.exists(os.path.join(workdir, "trials.jsonl"))


@pytest.mark.parametrize("index", range(len(BAD_CONFIGS)), ids=["missing", "broken"])
def test_bad_config_file_is_one_clear_error(bad_input, index):
  proc, _, path = bad_input[("config", index)]
  assert proc.returncode == 1
  assert BAD_CONFIGS[index][1] in proc.stderr and path in proc.stderr
  assert "Traceback" not in proc.stderr
