"""kill -9 while a checkpoint is being written: the same command started again ends bit-identical to a run that
was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft.train import trainer

_TMP = ".orbax-checkpoint-tmp"  # orbax writes <step><_TMP> and renames it to <step> when complete


def _kill_during_checkpoint_write(command, checkpoints, timeout=300) -> bool:
  """Starts `command` and SIGKILLs it as soon as a checkpoint is being written while an earlier one is complete
  (so that the rerun resumes). True if the kill landed while the write was unfinished (its tmp directory is left
  behind), False if the process finished first."""
  proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  before = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  deadline = time.time() + timeout
  try:
    while proc.poll() is None and time.time() < deadline:
      names = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
      if any(n.endswith(_TMP) for n in names - before) and any(n.isdigit() for n in names):
        proc.send_signal(signal.SIGKILL)
        break
  finally:
    if proc.poll() is None and time.time() >= deadline:
      proc.kill()
    proc.wait()
  return proc.returncode == -signal.SIGKILL and any(n.endswith(_TMP) for n in os.listdir(checkpoints))


def test_kill_during_checkpoint_write_then_rerun_is_bit_identical(folder_root, tmp_path):
  overrides = tiny_overrides(folder_root, **{"optim.epochs": 6, "checkpoint_every_epochs": 1,
                                             "eval_every_epochs": 2})
  workdir = tmp_path / "killed"
  command = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
             *cli_args(overrides)]
  # Each attempt resumes what the previous one saved; a kill that lands just after a write completes is
  # retried at a later checkpoint.
  for _ in range(4):
    if _kill_during_checkpoint_write(command, str(workdir / "checkpoints")):
      break
  else:
    raise AssertionError("no kill landed during a checkpoint write")
  assert not (workdir / "result.json").exists()

  rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  reference = trainer.run(load_config(overrides), str(tmp_path / "reference"))
  result = json.loads((workdir / "result.json").read_text())
  assert result["evals"] == reference["evals"] and result["steps"] == reference["steps"]
  assert result["launches"] >= 2  # resumed at least once
  np.testing.assert_array_equal(np.load(workdir / "logits_val200.npy"),
                                np.load(tmp_path / "reference" / "logits_val200.npy"))
