"""python -m jpeft.robustness_table: a row per finished run from its result.json, the study's rows beside runs of
its experiment, a clear error for an unfinished run or runs with other shifted sets."""
import csv
import json
import subprocess
import sys

import pytest

from jpeft import robustness_table
from jpeft.train.errors import ConfigError
from tests.helpers import REPO

SHIFTS = ("imagenet_v2_test", "imagenet_sketch_test", "imagenet_a_test", "imagenet_r_test")


def _run(path, method, accuracy, shifts, task="imagenet", early_stopping=None):
  path.mkdir(parents=True)
  result = dict(task=task, method=method, accuracy=accuracy, shift_accuracy=shifts)
  if early_stopping:
    result["early_stopping"] = early_stopping
  (path / "result.json").write_text(json.dumps(result))
  return str(path)


def test_table_of_imagenet_runs(tmp_path):
  lora = _run(tmp_path / "lora", "lora", 0.75, dict(zip(SHIFTS, (0.6, 0.4, 0.3, 0.7))),
              early_stopping=dict(best_epoch=7, stopped_epoch=17))
  full = _run(tmp_path / "full", "full", 0.7, dict(zip(SHIFTS, (0.5, 0.3, 0.1, 0.5))))
  proc = subprocess.run([sys.executable, "-m", "jpeft.robustness_table", f"--runs={lora},{full}",
                         f"--out={tmp_path / 'table'}"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "table" / "robustness.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["method"] for r in rows] == ["lora", "full", "zero-shot (study)", "lora (study)", "full (study)"]
  assert float(rows[0]["shift_mean"]) == pytest.approx(0.5) and rows[0]["best_epoch"] == "7"
  assert float(rows[3]["in_distribution"]) == pytest.approx(0.7656)  # the study's LoRA r32 row
  assert float(rows[4]["shift_mean"]) == pytest.approx(0.4250, abs=1e-4)  # its "mean of 4 shifts" column
  md = (tmp_path / "table" / "robustness.md").read_text()
  assert "| lora | 75.00 | 60.00 | 40.00 | 30.00 | 70.00 | 50.00 | 7 / 17 |" in md
  assert "| imagenet (eval split) | imagenet_v2 | imagenet_sketch | imagenet_a | imagenet_r |" in md


def test_other_experiments_get_no_study_rows_and_mismatches_are_refused(tmp_path):
  mini = _run(tmp_path / "mini", "lora", 0.5, {"mini_shapes_sketch_test": 0.2}, task="mini_shapes")
  table, sets = robustness_table.rows([mini])
  paths = robustness_table.write(str(tmp_path / "out"), table, sets)
  assert "(study)" not in open(paths["md"]).read()
  other = _run(tmp_path / "other", "full", 0.5, {"mini_shapes_colour_test": 0.2}, task="mini_shapes")
  with pytest.raises(ConfigError, match="scored the shifted sets"):
    robustness_table.rows([mini, other])
  with pytest.raises(ConfigError, match="has no result.json"):
    robustness_table.rows([str(tmp_path / "unfinished")])
