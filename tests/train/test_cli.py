"""The real CLI: a tiny ViT trains on a VTAB-style folder task, and bad input fails cleanly."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft.train import trainer
from jpeft.train.errors import ConfigError, WorkdirError
from tests.helpers import bad_config_files, missing_config_error, run_cases


def _cli(workdir, overrides, env=None):
  cmd = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
         *cli_args(overrides)]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def test_cli_trains_evaluates_and_writes_results(folder_root, tmp_path):
  workdir = tmp_path / "run"
  overrides = tiny_overrides(folder_root)
  proc = _cli(workdir, overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]

  result = json.loads((workdir / "result.json").read_text())
  assert result["task"] == "dtd" and result["mode"] == "tune" and result["eval_split"] == "val200"
  assert result["steps"] == 4 * (64 // 16)
  assert [e["epoch"] for e in result["evals"]] == [1, 2, 3, 4]
  assert result["best_accuracy"] >= result["accuracy"] > 0.25  # 4 colour-coded classes: well above chance
  assert result["trainable_params"] == 32 * 47 + 47  # linear: the head only
  assert result["train_images_per_s"] > 0 and result["wall_s"] > 0

  logits, labels = np.load(workdir / "logits_val200.npy"), np.load(workdir / "labels_val200.npy")
  assert logits.shape == (32, 47) and logits.dtype == np.float32 and labels.shape == (32,)
  assert np.isclose((logits.argmax(-1) == labels).mean(), result["accuracy"])

  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert losses[-1] < 0.7 * losses[0]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tb"))

  # mode 'eval' of the saved checkpoint reproduces the final evaluation, in files of its own.
  evaluated = trainer.run(load_config(dict(overrides, mode="eval")), str(workdir))
  assert evaluated["split"] == "val200" and evaluated["accuracy"] == result["accuracy"]
  np.testing.assert_allclose(np.load(workdir / "eval_logits_val200.npy"), logits, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(np.load(workdir / "eval_labels_val200.npy"), labels)


BAD_CONFIG_FILES = [
    (None, missing_config_error("jpeft")),
    ("import math\nSCALE = math.sqrt(-1)\n", "failed to load: ValueError at line 2: math domain error"),
]


@pytest.fixture(scope="module")
def bad_input(folder_root, tmp_path_factory) -> dict:
  """{case: (completed process, its workdir, config path)} for every bad command line (tests.helpers.run_cases)."""
  tmp = tmp_path_factory.mktemp("bad_input")
  main = ["-m", "jpeft.main", "--config=jpeft/config_base.py"]
  bad = {"impossible": tiny_overrides(folder_root, **{"optim.warmup_epochs": 7}),
         "unknown": dict(tiny_overrides(folder_root), **{"optim.lrate": 0.1})}
  cases = {key: (main + [f"--workdir={tmp / key}", *cli_args(overrides)], tmp / key, None)
           for key, overrides in bad.items()}
  for i, path in enumerate(bad_config_files(tmp, [content for content, _ in BAD_CONFIG_FILES])):
    workdir = tmp / f"run{i}"
    cases[i] = (["-m", "jpeft.main", f"--config={path}", "--config.task=dtd", f"--workdir={workdir}"], workdir, path)
  return run_cases(cases)


def test_cli_rejects_impossible_value_before_compute(bad_input):
  proc, workdir, _ = bad_input["impossible"]
  assert proc.returncode == 1
  assert "optim.warmup_epochs" in proc.stderr and "7" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (workdir / "checkpoints").exists()


def test_cli_rejects_unknown_field(bad_input):
  proc, _, _ = bad_input["unknown"]
  assert proc.returncode == 1 and "jpeft: error: --config.optim.lrate: optim has no field 'lrate'" in proc.stderr


@pytest.mark.parametrize("index", range(len(BAD_CONFIG_FILES)), ids=["missing", "broken"])
def test_missing_or_broken_config_file_is_one_clear_error(bad_input, index):
  proc, workdir, path = bad_input[index]
  assert proc.returncode == 1
  assert BAD_CONFIG_FILES[index][1] in proc.stderr and path in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_help_exits_zero_and_explains_the_flags(tmp_path):
  # absl exits 1 after printing --help; asking for help must not look like a failure to a shell or a script.
  proc = subprocess.run([sys.executable, "-m", "jpeft.main", "--help"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "--workdir" in proc.stdout and "--config" in proc.stdout


def test_unwritable_workdir_fails_cleanly(folder_root, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(WorkdirError, match="--workdir"):
    trainer.run(load_config(tiny_overrides(folder_root)), str(blocker / "run"))


def test_streamed_input_with_augmentation(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"data.in_memory": False, "data.augment": "hflip",
                                             "optim.epochs": 2, "mode": "final"})
  result = trainer.run(load_config(overrides), str(tmp_path / "stream"))
  assert result["steps"] == 2 * (96 // 16) and result["eval_split"] == "test"
  assert np.load(tmp_path / "stream" / "logits_test.npy").shape == (48, 47)


def test_augmentation_needs_streaming(folder_root, tmp_path):
  with pytest.raises(ConfigError, match="data.augment"):
    trainer.run(load_config(tiny_overrides(folder_root, **{"data.augment": "hflip"})), str(tmp_path / "x"))
