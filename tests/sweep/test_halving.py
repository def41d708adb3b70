"""Successive halving (`--grid.schedule=halving`, issue 31 item 5): the eta arithmetic, validation, a survivor
equal to the full protocol's trial, honest records, resume, and no mixing with a full-protocol workdir."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft import cli, config_base
from jpeft.sweep import grid, halving, protocol, runner
from jpeft.sweep.grid import GridError
from jpeft.train.errors import ConfigError

LRS = (1e-3, 3e-2, 1e-1)  # three settings; rung at epoch 1 of 2 keeps one


def _grid(**entries):
  return config_base.apply_overrides(grid.default_grid(), {"lr": LRS, "wd": (1e-4,), "seeds": (42,), **entries})


def _halving(**entries):
  return _grid(schedule="halving", halving_rungs=(1,), **entries)


def _sweep(config, workdir, grid_):
  # One chunk of 3 at the rung, the survivor alone after it: the full protocol's program (3 trials) is reused.
  return protocol.run_sweep(config, ["dtd"], ["linear"], grid_, workdir, 4, final=False, log=lambda _: None)


def _rows(workdir):
  with open(os.path.join(workdir, "trials.jsonl")) as f:
    return {json.loads(line)["lr"]: json.loads(line) for line in f}


@pytest.fixture(scope="module")
def swept(folder_root, tmp_path_factory):
  """The same three linear trials under the full protocol and under halving (2 epochs, rung at 1, eta 2)."""
  root = tmp_path_factory.mktemp("halving")
  config = load_config(tiny_overrides(folder_root))
  out = dict(cache=str(root / "xla"))  # the tests' programs compile once, in this fixture
  for name, grid_ in (("full", _grid()), ("halving", _halving())):
    workdir = str(root / name)
    with cli.compilation_cache(out["cache"]):
      (summary,) = _sweep(config, workdir, grid_)
    out[name] = dict(workdir=workdir, summary=summary, rows=_rows(workdir))
  return config, out


def test_keep_and_default_rungs():
  assert [halving.keep(n, 2) for n in (1, 2, 3, 4, 5, 16)] == [1, 1, 1, 2, 2, 8]
  assert [halving.keep(n, 3) for n in (2, 3, 8, 9)] == [1, 1, 2, 3]
  g = {"schedule": "halving", "halving_eta": 2, "halving_rungs": ()}
  # 16 settings need 4 cuts (16, 8, 4, 2, 1): epochs 10/16, 10/8 (both round to 1), 10/4 -> 2, 10/2 -> 5.
  assert halving.resolve(g, 10, 16).rungs == (1, 2, 5)
  assert halving.resolve(g, 10, 4).rungs == (2, 5)
  assert halving.resolve(g, 10, 1).rungs == ()
  assert halving.resolve(dict(g, halving_eta=3), 27, 9).rungs == (3, 9)
  assert halving.resolve(dict(g, halving_rungs=(3, 7)), 10, 16).rungs == (3, 7)


def test_survivors_rank_by_mean_drop_diverged_and_break_ties_in_grid_order():
  def row(accuracy, nonfinite=0):
    return dict(diverged=nonfinite > 0, rung_evals=[dict(epoch=1, accuracy=accuracy, nonfinite_steps=nonfinite)])
  rows = {"a": [row(0.5), row(0.7)], "b": [row(0.9, nonfinite=3), row(0.9)], "c": [row(0.6)], "d": [row(0.6)]}
  # Means a 0.6, c 0.6, d 0.6: a tie that grid order breaks; b diverged despite the best accuracy.
  assert halving.survivors(["a", "b", "c", "d"], rows, 1, 2) == ["a", "c"]
  assert halving.survivors(["d", "c", "a", "b"], rows, 1, 2) == ["d", "c"]
  assert halving.survivors(["b"], {"b": rows["b"]}, 1, 2) == []  # nothing finite goes on


@pytest.mark.parametrize("entries,message", [
    ({"schedule": "halve"}, "Grid entry 'schedule' has the value 'halve'"),
    ({"schedule": "halving", "halving_eta": 1}, "Grid entry 'halving_eta' has the value 1"),
    ({"schedule": "halving", "halving_rungs": (2,)}, r"Grid entry 'halving_rungs' has the value 2: .* \[1, 2\)"),
    ({"schedule": "halving", "halving_rungs": (0,)}, "Grid entry 'halving_rungs' has the value 0"),
])
def test_bad_schedule_is_named_and_writes_nothing(folder_root, tmp_path, entries, message):
  workdir = str(tmp_path / "sweep")
  with pytest.raises(GridError, match=message):
    _sweep(load_config(tiny_overrides(folder_root)), workdir, _grid(**entries))
  assert not os.path.exists(workdir)


def test_unordered_rungs_are_named():
  with pytest.raises(GridError, match="'halving_rungs' has the value 5,2: give the rungs' epochs strictly increasing"):
    halving.resolve({"halving_rungs": (5, 2)}, 10, 4)


def test_the_survivor_is_the_full_protocols_trial_and_records_are_honest(swept):
  _, out = swept
  full, halved = out["full"]["rows"], out["halving"]["rows"]
  summary = out["halving"]["summary"]
  finished = [lr for lr, r in halved.items() if not r["halted"]]
  assert len(finished) == 1 and summary["selected"]["lr"] == finished[0]
  for lr, row in halved.items():
    # Every trial's evaluations equal the full protocol's at the same epochs (the schedule spans 2 epochs).
    assert row["stopped_epoch"] == (2 if lr in finished else 1) and row["halving"] == dict(eta=2, rungs=[1], epochs=2)
    assert [e["epoch"] for e in row["evals"]] == list(range(1, row["stopped_epoch"] + 1))
    for mine, theirs in zip(row["evals"], full[lr]["evals"]):
      assert mine["accuracy"] == theirs["accuracy"]
      np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-5)
    assert row["rung_evals"][0]["accuracy"] == full[lr]["evals"][0]["accuracy"]
    assert row["steps"] == full[lr]["steps"] * row["stopped_epoch"] // 2
    assert os.path.exists(os.path.join(out["halving"]["workdir"], row["predictions"]))
  # The survivor was the best at the rung; selection among finishers only.
  best = max(LRS, key=lambda lr: (full[lr]["evals"][0]["accuracy"], -LRS.index(lr)))
  assert finished == [best]
  assert summary["schedule"] == "halving" and summary["tune_trial_epochs"] == 3 + 1
  assert out["full"]["summary"]["schedule"] == "full" and out["full"]["summary"]["tune_trial_epochs"] == 3 * 2


def test_a_trial_continued_from_its_rung_has_the_parameters_of_an_unbroken_run(swept):
  config, out = swept
  trials = [grid.Trial("dtd", "linear", 3e-2, 1e-4, (), 42)]
  with cli.compilation_cache(out["cache"]):  # the survivor's programs, loaded
    group = runner.GroupRunner(config, trials, {})
    unbroken = group.start(trials, "tune")
    group.advance(unbroken, 2)
    first = group.start(trials, "tune")
    group.advance(first, 1, rung=True)
    states = group.detach(first)
    second = group.start(trials, "tune", states)  # continued in another chunk, from the host
    group.advance(second, 2)
  a, b = jax.device_get(unbroken.trainable), jax.device_get(second.trainable)
  for path in a:
    np.testing.assert_allclose(b[path], a[path], rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(b[path][0], states[0].trainable[path]) for path in b)  # epoch 2 did train
  (row,), _ = group.rows(second)
  (whole,), _ = group.rows(unbroken)
  assert [e["epoch"] for e in row["evals"]] == [e["epoch"] for e in whole["evals"]] == [1, 2]
  np.testing.assert_allclose([e["loss"] for e in row["evals"]], [e["loss"] for e in whole["evals"]], rtol=1e-5)
  assert row["rung_evals"][0]["epoch"] == 1 and row["steps"] == unbroken.step


def test_a_killed_pair_resumes_to_the_same_result(swept, tmp_path):
  config, out = swept
  workdir = str(tmp_path / "resumed")
  shutil.copytree(out["halving"]["workdir"], workdir)
  path = os.path.join(workdir, "trials.jsonl")
  with open(path) as f:
    lines = f.readlines()
  with open(path, "w") as f:  # killed after the rung's cuts were recorded, before the survivor finished
    f.writelines(line for line in lines if json.loads(line)["halted"])
  with cli.compilation_cache(out["cache"]):
    (summary,) = _sweep(config, workdir, _halving())
  assert summary == out["halving"]["summary"]
  rows = _rows(workdir)
  assert len(rows) == 3 and sum(not r["halted"] for r in rows.values()) == 1
  for lr, row in rows.items():
    assert row["accuracy"] == out["halving"]["rows"][lr]["accuracy"]


def test_a_workdir_of_one_schedule_refuses_the_other(swept):
  config, out = swept
  with pytest.raises(ConfigError, match="grid.schedule = 'full' there, 'halving' here"):
    _sweep(config, out["full"]["workdir"], _halving())
  with pytest.raises(ConfigError, match="grid.schedule = 'halving' there, 'full' here"):
    _sweep(config, out["halving"]["workdir"], _grid())
