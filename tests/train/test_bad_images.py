"""Bad images in a folder task: one line naming the file before training, or left out and recorded (issue 28)."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft.data import get_task
from jpeft.train import splits, trainer

SIZES = {"train800": 16, "val200": 8}


def _write_task(root, labels=lambda i: i % 4):
  """<root>/dtd: 8x8 JPEGs, train800.txt and val200.txt; returns {split: [image paths]}."""
  task_dir = os.path.join(root, "dtd")
  os.makedirs(os.path.join(task_dir, "images"))
  paths, index = {}, 0
  for split, size in SIZES.items():
    lines, paths[split] = [], []
    for _ in range(size):
      name = f"images/{index}.jpg"
      tf.io.write_file(os.path.join(task_dir, name),
                       tf.io.encode_jpeg(np.full((8, 8, 3), 60 * (labels(index) % 4), np.uint8)))
      lines.append(f"{name} {labels(index)}")
      paths[split].append(os.path.join(task_dir, name))
      index += 1
    with open(os.path.join(task_dir, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  return paths


def _overrides(root, **extra):
  return tiny_overrides(str(root), **{"optim.epochs": 1, "optim.batch_size": 8, "optim.warmup_epochs": 0,
                                      "eval_every_epochs": 1, "checkpoint_every_epochs": 1, **extra})


def test_cli_reports_a_corrupt_image_in_one_line_before_training(tmp_path):
  paths = _write_task(str(tmp_path / "data"))
  with open(paths["train800"][4], "wb") as f:
    f.write(b"\xff\xd8\xff\xe0" + b"\x00" * 100)  # a JPEG header, then nothing decodable
  with open(paths["val200"][1], "w") as f:
    f.write("<html>a web page saved as .jpg</html>\n")
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
         *cli_args(_overrides(tmp_path / "data"))]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
  assert len(errors) == 1 and errors[0].startswith("jpeft: error: 1 bad image of 16 in split 'train800'"), proc.stderr
  assert f"line 5: {paths['train800'][4]} cannot be decoded" in errors[0]
  # The eval split is checked too, and named in the same line.
  assert f"; 1 bad image of 8 in split 'val200'" in errors[0]
  assert f"line 2: {paths['val200'][1]} is not an image file" in errors[0]
  assert "Traceback" not in proc.stderr and "jpeg" not in proc.stderr.replace(errors[0], "").lower()
  assert not workdir.exists()  # failed before training: no workdir, no checkpoint


def test_skip_bad_images_trains_without_them_and_records_them(tmp_path):
  paths = _write_task(str(tmp_path / "data"))
  with open(paths["train800"][2], "w") as f:
    f.write("a text file named .jpg\n")
  os.remove(paths["val200"][7])
  config = load_config(_overrides(tmp_path / "data", **{"data.skip_bad_images": True}))
  result = trainer.run(config, str(tmp_path / "run"))
  assert result["steps"] == 1  # 15 training images, batch 8
  with open(tmp_path / "run" / "result.json") as f:
    recorded = json.load(f)["skipped_images"]
  assert recorded["count"] == 2
  assert [(b["split"], b["path"], b["line"]) for b in recorded["files"]] == [
      ("train800", paths["train800"][2], 3), ("val200", paths["val200"][7], 8)]
  assert recorded["files"][0]["reason"].startswith("is not an image file")
  assert recorded["files"][1]["reason"] == "does not exist"
  assert np.load(tmp_path / "run" / "labels_val200.npy").shape == (7,)
  # Mode 'eval' of the run records what it left out of the split it scores.
  evaluated = trainer.run(load_config(_overrides(tmp_path / "data", **{"data.skip_bad_images": True,
                                                                          "mode": "eval"})), str(tmp_path / "run"))
  assert evaluated["accuracy"] == result["accuracy"]
  with open(tmp_path / "run" / "eval_val200.json") as f:
    assert json.load(f)["skipped_images"] == dict(count=1, files=recorded["files"][1:])


def test_a_split_with_one_label_warns(tmp_path, caplog):
  _write_task(str(tmp_path), labels=lambda i: i % 4 if i < SIZES["train800"] else 3)  # val200: all 3
  config = load_config(_overrides(tmp_path))
  val = splits.Split.open(config, get_task("dtd"), "val200")
  warnings = [r.getMessage() for r in caplog.records if "label" in r.getMessage()]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  assert "split 'val200' of task 'dtd' has label 3" in warnings[0]
  assert list(val.warnings) == warnings
  train = splits.Split.open(config, get_task("dtd"), "train800")  # four labels: nothing to say
  assert train.warnings == () and splits.split_warnings(train, val, val) == warnings
