"""One process per workdir, and a run that fails before saving anything leaves no workdir behind."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft.checkpoints import CheckpointError
from jpeft.data import DataError
from jpeft.train import trainer
from jpeft.workdir_lock import LOCK_FILE


def _command(workdir, overrides):
  return [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
          *cli_args(overrides)]


def _wait_for_lock(workdir, proc, timeout=120):
  """Waits until `proc` holds the workdir's lock (its pid is in the lock file)."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    try:
      if json.loads((workdir / LOCK_FILE).read_text())["pid"] == proc.pid:
        return
    except (OSError, ValueError):
      pass
    time.sleep(0.05)
  raise AssertionError(f"process {proc.pid} did not take the lock (exit status {proc.poll()})")


def test_second_process_on_a_workdir_fails_and_touches_nothing(folder_root, tmp_path):
  workdir = tmp_path / "run"
  command = _command(workdir, tiny_overrides(folder_root, **{"optim.epochs": 2}))
  first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_lock(workdir, first)
    first.send_signal(signal.SIGSTOP)  # holds the lock for as long as the second process needs
    before = sorted(os.listdir(workdir))
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert sorted(os.listdir(workdir)) == before
  finally:
    first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=300)
  assert second.returncode == 1
  assert f"in use by another jpeft process (pid {first.pid}" in second.stderr
  assert "--workdir" in second.stderr and "Traceback" not in second.stderr
  assert first.returncode == 0, err[-3000:]
  assert json.loads((workdir / "result.json").read_text())["steps"] == 2 * 4


@pytest.mark.parametrize("broken, error", [({"data.folder_root": "/nonexistent/vtab"}, DataError),
                                           ({"pretrained.path": "/nonexistent/backbone.npz"}, CheckpointError)])
def test_failed_run_leaves_no_workdir(folder_root, tmp_path, broken, error):
  with pytest.raises(error):
    trainer.run(load_config(tiny_overrides(folder_root, **broken)), str(tmp_path / "new"))
  assert not (tmp_path / "new").exists()
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("kept")
  with pytest.raises(error):
    trainer.run(load_config(tiny_overrides(folder_root, **broken)), str(tmp_path / "mine"))
  assert sorted(os.listdir(tmp_path / "mine")) == ["notes.txt"]
