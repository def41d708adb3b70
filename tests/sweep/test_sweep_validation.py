"""A sweep that cannot run writes nothing; a sweep with no finished trial takes a new config; a pair whose every
trial diverged is an error naming it; --shard values (issue 28 item 7, issue 33)."""
import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, load_config, tiny_overrides
from jpeft import config_base
from jpeft.sweep import grid, pairs, protocol, report, trial_log
from jpeft.sweep.grid import GridError
from jpeft.train.errors import ConfigError
from tests.helpers import cli_args


def _grid(**entries):
  return config_base.apply_overrides(grid.default_grid(), {"lr": (1e-2,), "wd": (1e-4,), "seeds": (42,), **entries})


@pytest.mark.parametrize("overrides,entries,trial_batch,error,message", [
    ({"optim.batch_size": 128}, {}, 2, ConfigError,
     "'optim.batch_size' = 128 is larger than the train800 split of 'dtd' (64 examples)"),
    ({}, {}, 0, ConfigError, "--trial_batch=0 is not usable"),
    ({}, {"wd": ()}, 2, GridError, "Grid entry 'wd' is empty"),
    ({}, {"lora.rank": ()}, 2, GridError, "Grid entry 'lora.rank' is empty"),
])
def test_a_sweep_that_cannot_run_writes_nothing(folder_root, tmp_path, overrides, entries, trial_batch, error,
                                                message):
  workdir = str(tmp_path / "sweep")
  config = load_config(dict(tiny_overrides(folder_root), **overrides))
  with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
    protocol.run_sweep(config, ["dtd"], ["linear", "lora"], _grid(**entries), workdir, trial_batch, final=False,
                       log=lambda _: None)
  assert not os.path.exists(workdir)  # no sweep_config.json, no lock: the corrected rerun starts clean


def test_a_sweep_with_no_finished_trial_takes_a_new_config(folder_root, tmp_path):
  """What a sweep that failed before its first trial left (its config, its plan, the locks) does not refuse the
  corrected rerun; once a trial is recorded, another config is refused again."""
  workdir = str(tmp_path)
  first = load_config(dict(tiny_overrides(folder_root), **{"optim.epochs": 3}))
  trial_log.open_log(first, workdir)  # the record a failed sweep left behind
  pairs.update_plan(workdir, [("dtd", "linear")], _grid().to_dict(), False, {"dtd": 1}, alone=True)
  corrected = load_config(dict(tiny_overrides(folder_root), **{"optim.epochs": 1}))
  (summary,) = protocol.run_sweep(corrected, ["dtd"], ["linear"], _grid(), workdir, 2, final=False,
                                  log=lambda _: None)
  assert summary["selected"] is not None
  with open(os.path.join(workdir, trial_log.SWEEP_CONFIG_FILE)) as f:
    assert json.load(f)["values"]["optim.epochs"] == 1
  with pytest.raises(ConfigError, match="optim.epochs = 1 there, 3 here"):
    protocol.run_sweep(first, ["dtd"], ["linear"], _grid(), workdir, 2, final=False, log=lambda _: None)


def test_a_pair_whose_every_trial_diverged_is_an_error_naming_it(folder_root, tmp_path):
  workdir = str(tmp_path / "sweep")
  args = [sys.executable, "-m", "jpeft.sweep", f"--config={os.path.join(REPO, 'jpeft', 'config_base.py')}",
          *cli_args(dict(tiny_overrides(folder_root), **{"optim.epochs": 1})), "--tasks=dtd", "--methods=linear",
          f"--workdir={workdir}", "--grid.lr=1e30", "--grid.wd=1e-4", "--grid.seeds=42"]
  proc = subprocess.run(args, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=400)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "jpeft.sweep: error: dtd/linear has no finite trial: all 1 tune trials diverged" in proc.stderr
  assert "selected None" not in proc.stdout and "Traceback" not in proc.stderr
  with open(os.path.join(workdir, protocol.SUMMARY_FILE)) as f:
    assert json.loads(f.readline())["selected"] is None  # recorded as finished: a rerun does not train it again


@pytest.mark.parametrize("value,environ,expected", [
    ("1/3", {}, ((1, 3), ["b", "e"])),
    ("any", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, ((None, 1), list("abcde"))),
    (None, {}, ((None, 1), list("abcde"))),
    (None, {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, ((2, 3), ["c"])),
    (None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"},
     ((2, 3), ["c"])),
])
def test_shard_takes_every_nth_pair(value, environ, expected):
  shard = pairs.parse_shard(value, environ)
  assert ((shard.index, shard.count), shard.select(list("abcde"))) == expected


@pytest.mark.parametrize("value,environ,message", [
    ("3/3", {}, "--shard=3/3 is not usable: give K/N with 0 <= K < N"),
    ("1", {}, "--shard=1 is not usable"),
    ("a/b", {}, "--shard=a/b is not usable"),
    (None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"}, "SLURM_ARRAY_TASK_ID=3 minus"),
])
def test_bad_shard_is_named(value, environ, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
    pairs.parse_shard(value, environ)


@pytest.mark.parametrize("made", [False, True])
def test_report_of_a_folder_without_a_sweep_is_one_line_and_touches_nothing(tmp_path, made):
  workdir = tmp_path / "not_a_sweep"
  if made:
    workdir.mkdir()
  with pytest.raises(ConfigError, match="holds no recorded sweep \\(sweep_plan.json is missing\\)"):
    report.write(str(workdir))
  assert (sorted(os.listdir(workdir)) == []) if made else not workdir.exists()
