"""A full disk: any failed write (checkpoint, metrics, result, predictions, sweep rows) ends in one error naming the
file and the cause, earlier checkpoints stay intact, and the same command resumes once there is space.

A real full disk where the machine lets the tests mount a small tmpfs (root on Linux), an injected one
(ENOSPC, or the ValueError Orbax raises for it) everywhere."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft import interrupts
from jpeft.sweep import trial_log
from jpeft.train import checkpointing, errors, results, trainer, writers

# 4 steps per epoch, a checkpoint every epoch: steps 4, 8, 12, 16.
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
# What Orbax raises (at the next save) when TensorStore's write of step 8 failed for lack of space.
ORBAX_ENOSPC = ('RESOURCE_EXHAUSTED: Error writing local file "{d}/8.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/'
                '_sharding": Failed writing: "{d}/8.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/_sharding.__lock": '
                'Failed to write 2033 bytes to file 8: No space left on device [os_error_code=\'28\']')


@pytest.fixture(scope="module")
def overrides(folder_root):
  return tiny_overrides(folder_root, **{"checkpoint_every_epochs": 1})


@pytest.fixture(scope="module")
def reference(overrides, tmp_path_factory):
  return trainer.run(load_config(overrides), str(tmp_path_factory.mktemp("reference")))


def test_a_failed_async_checkpoint_write_is_one_error_and_the_rerun_resumes(overrides, reference, tmp_path,
                                                                            monkeypatch):
  """Orbax writes step 8 in the background; its failure surfaces as a ValueError from the next save's wait."""
  save, wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished
  failed = []

  def save_failing_at_8(self, step, *args, **kwargs):
    if step == 8:  # the background write of step 8 runs out of space: nothing complete is left of it
      failed.append(str(self.directory))
      return True
    return save(self, step, *args, **kwargs)

  def wait_reporting_it(self):
    if failed:
      raise ValueError(ORBAX_ENOSPC.format(d=failed.pop()))
    return wait(self)
  monkeypatch.setattr(ocp.CheckpointManager, "save", save_failing_at_8)
  monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait_reporting_it)
  workdir = str(tmp_path / "run")
  checkpoints = os.path.join(os.path.abspath(workdir), "checkpoints")
  with pytest.raises(checkpointing.CheckpointWriteError) as error:
    trainer.run(load_config(overrides), workdir)
  monkeypatch.undo()
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"Could not write the checkpoint of step 8 to {checkpoints}: ValueError: "
                            "RESOURCE_EXHAUSTED:")
  assert "No space left on device" in message
  assert "Earlier checkpoints are intact (newest: step 4); free space" in message
  assert interrupts.newest_checkpoint(checkpoints) == 4

  result = trainer.run(load_config(overrides), workdir)  # space again: the same run resumes from step 4
  assert result["launches"] == 2 and result["evals"] == reference["evals"]


def _mount_small_tmpfs(directory: str, size: str) -> bool:
  os.makedirs(directory)
  if not sys.platform.startswith("linux") or shutil.which("mount") is None:
    return False
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory],
                        capture_output=True).returncode == 0


def test_a_full_tmpfs_is_one_line_and_the_same_command_resumes_once_there_is_space(overrides, reference,
                                                                                  tmp_path):
  disk = str(tmp_path / "disk")
  if not _mount_small_tmpfs(disk, "120k"):  # one checkpoint of this run is ~80 KB
    pytest.skip("cannot mount a tmpfs here (needs root on Linux); the injected-failure tests cover the rest")
  try:
    workdir = os.path.join(disk, "run")
    command = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
               f"--compilation_cache={tmp_path / 'xla'}", *cli_args(overrides)]  # the rerun compiles nothing
    full = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert full.returncode == 1, full.stderr[-3000:]
    lines = [line for chunk in full.stderr.splitlines() for line in chunk.split("\r")
             if not re.match(r"^(\s*$|.*it/s|.*s/it|WARNING: All log messages|I0000 |To enable the following)", line)]
    assert len(lines) == 1, full.stderr[-5000:]
    assert re.fullmatch(rf"jpeft: error: Could not write the checkpoint of step \d+ to {workdir}/checkpoints: .*No "
                        r"space left on device.*\. Earlier checkpoints are intact \(newest: step \d+\); free space .*",
                        lines[0]), lines[0]
    newest = interrupts.newest_checkpoint(os.path.join(workdir, "checkpoints"))
    assert newest is not None and f"(newest: step {newest})" in lines[0]

    subprocess.run(["mount", "-o", "remount,size=4m", disk], check=True)
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads(open(os.path.join(workdir, "result.json")).read())
    assert result["launches"] == 2 and result["evals"] == reference["evals"]
  finally:
    subprocess.run(["umount", disk], capture_output=True)


class _FullFile:
  """An open, empty file on a full disk: every write fails with ENOSPC."""

  def __init__(self, *args, **kwargs):
    del args, kwargs

  def write(self, data):
    raise ENOSPC

  def seek(self, offset, whence=os.SEEK_SET):
    return 0

  def tell(self):
    return 0

  def read(self, size=-1):
    return b""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def close(self):
    pass


def test_a_failed_metrics_write_names_the_file(tmp_path, monkeypatch):
  monkeypatch.setattr(writers, "open", _FullFile, raising=False)
  with pytest.raises(errors.WriteError) as error:
    writers.MetricWriter(str(tmp_path)).write(2, {"train/loss": 1.0})
  assert str(error.value) == (
      f"Could not write '{tmp_path}/metrics.jsonl': No space left on device (errno 28). The checkpoints saved "
      "before it are intact; free space (or fix permissions) and run the same command again to resume from the "
      "newest.")


def test_failed_result_and_prediction_writes_name_the_file(tmp_path, monkeypatch):
  monkeypatch.setattr(results, "open", _FullFile, raising=False)
  with pytest.raises(errors.WriteError, match=f"Could not write '{tmp_path}/result.json': No space left on device"):
    results.write_json(str(tmp_path / "result.json"), {"accuracy": 0.5})
  assert not os.path.exists(tmp_path / "result.json")

  def full_save(path, array):
    raise ENOSPC
  monkeypatch.setattr(np, "save", full_save)
  with pytest.raises(errors.WriteError, match=f"Could not write '{tmp_path}/logits_test.npy': No space left"):
    results.save_predictions(str(tmp_path), "test", dict(logits=np.zeros((2, 3)), labels=np.zeros(2)))


def test_a_failed_sweep_row_write_names_trials_jsonl(tmp_path, monkeypatch):
  path = str(tmp_path / trial_log.TRIALS_FILE)
  log = trial_log.TrialLog(path, lambda row: "h")
  monkeypatch.setattr(trial_log, "open", _FullFile, raising=False)
  with pytest.raises(errors.WriteError) as error:
    log.append([dict(stage="tune", key="k")])
  assert str(error.value).startswith(f"Could not write '{path}': No space left on device (errno 28). The trials "
                                     "recorded in trials.jsonl before it are kept; free space")
