"""Many-shot sweeps: selection averages a size's tuning splits; chunks never mix them. No training."""
import json

import numpy as np
import pytest

from jpeft import config_base
from jpeft.sweep import grid, protocol, runner
from jpeft.train.errors import ConfigError

# lr 1e-3 wins on tuning split 0 alone, lr 1e-2 on the mean of the five splits.
VAL = {1e-3: [0.9, 0.1, 0.1, 0.1, 0.1], 1e-2: [0.5] * 5}


def _fake_run_trials(calls):
  def run_trials(config, trials, mode, trial_batch, on_chunk=None, **kwargs):
    del config, trial_batch, kwargs
    rows = []
    for t in trials:
      calls.append((mode, t.lr, t.tune_split))
      accuracy = VAL[t.lr][t.tune_split] if mode == "tune" else 0.7
      rows.append(dict(t.row(), stage=mode, accuracy=accuracy, best_accuracy=accuracy, diverged=False,
                       trainable_params=3))
    on_chunk(rows, dict(logits=np.zeros((len(rows), 2, 3), np.float32), labels=np.zeros(2, np.int32)))
    return rows
  return run_trials


def test_selection_averages_the_five_tuning_splits(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(runner, "run_trials", _fake_run_trials(calls))
  config = config_base.manyshot_config("cifar100", "train500")  # 5 per class: five 80/20 tuning splits
  sweep_grid = config_base.apply_overrides(grid.default_grid(), {"lr": (1e-3, 1e-2), "wd": (1e-4,)})
  (summary,) = protocol.run_sweep(config, ["cifar100"], ["linear"], sweep_grid, str(tmp_path), trial_batch=4,
                                  log=lambda _: None)
  assert summary["selected"]["lr"] == 1e-2 and summary["val_accuracy"] == 0.5 and summary["tune_splits"] == 5
  assert sorted(c for c in calls if c[0] == "tune") == sorted(("tune", lr, j) for lr in VAL for j in range(5))
  assert [c for c in calls if c[0] == "final"] == [("final", 1e-2, 0)]  # once per seed, not once per split
  rows = [json.loads(line) for line in open(tmp_path / "trials.jsonl")]
  assert len({(r["stage"], r["key"]) for r in rows}) == len(rows) == 11


def test_chunks_hold_one_tuning_split(monkeypatch):
  chunks = []

  class FakeRunner:
    def __init__(self, *args):
      del args

    def train(self, trials, mode, stop=None, on_epoch=None):
      del on_epoch
      chunks.append({t.tune_split for t in trials})
      return [dict(t.row(), accuracy=0.0) for t in trials], {}

  monkeypatch.setattr(runner, "GroupRunner", FakeRunner)
  trials = grid.expand("cifar100", "linear",
                       config_base.apply_overrides(grid.default_grid(), {"lr": (1e-3, 1e-2, 0.1)}), 5)
  assert len(trials) == 3 * 2 * 5 and len(grid.shape_groups(trials)) == 1
  rows = runner.run_trials(config_base.get_config(), trials, "tune", trial_batch=8)
  assert len(rows) == len(trials) and all(len(c) == 1 for c in chunks) and len(chunks) == 5


def test_a_sweep_workdir_holds_one_size(monkeypatch, tmp_path):
  monkeypatch.setattr(runner, "run_trials", _fake_run_trials([]))
  sweep_grid = config_base.apply_overrides(grid.default_grid(), {"lr": (1e-3, 1e-2), "wd": (1e-4,)})
  protocol.run_sweep(config_base.manyshot_config("cifar100", "train500"), ["cifar100"], ["linear"], sweep_grid,
                     str(tmp_path), trial_batch=4, log=lambda _: None)
  with pytest.raises(ConfigError, match="data.subset"):
    protocol.run_sweep(config_base.manyshot_config("cifar100", "train1k"), ["cifar100"], ["linear"], sweep_grid,
                       str(tmp_path), trial_batch=4, log=lambda _: None)
