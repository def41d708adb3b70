"""Ctrl-C and SIGTERM stop a sweep between steps with one line and exit status 130 / 143; finished trials are kept
and the chunk in training is trained again by the same command."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO, load_config, tiny_overrides
from jpeft import interrupts
from jpeft.sweep import grid, runner, trial_log


def test_sigterm_stops_the_chunk_between_steps_and_records_nothing_of_it(folder_root, monkeypatch):
  config = load_config(tiny_overrides(folder_root))  # 4 steps per epoch, 2 epochs
  trials = [grid.Trial("dtd", "lora", lr, 1e-4, (("lora.rank", 2),), 42) for lr in (1e-3, 1e-2)]

  def not_caught(signum, frame):
    raise AssertionError("SIGTERM was not handled by the sweep")
  previous = signal.signal(signal.SIGTERM, not_caught)
  batches = runner.GroupRunner._batches

  def signal_at_step_3(self, *args):
    for i, batch in enumerate(batches(self, *args)):
      if i == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch
  monkeypatch.setattr(runner.GroupRunner, "_batches", signal_at_step_3)
  recorded = []
  try:
    with pytest.raises(interrupts.Interrupted) as stopped:
      runner.run_trials(config, trials, "tune", trial_batch=2, on_chunk=lambda rows, _: recorded.extend(rows))
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert stopped.value.exit_code == 143
  assert stopped.value.message == ("the chunk of 2 dtd/lora trials (tune) stopped at step 3 of 8 and will be "
                                   "trained again (a chunk keeps no checkpoint)")
  assert not recorded


def test_ctrl_c_to_the_sweep_cli_exits_130_with_one_line(folder_root, tmp_path):
  workdir = str(tmp_path / "sweep")
  overrides = dict(tiny_overrides(folder_root), **{"optim.epochs": 50})  # long enough to be stopped while training
  command = [sys.executable, "-m", "jpeft.sweep", "--config=jpeft/config_base.py", "--tasks=dtd", "--methods=lora",
             f"--workdir={workdir}", "--trial_batch=2", "--nofinal", "--grid.lr=1e-3,1e-2", "--grid.wd=1e-4",
             "--grid.seeds=42", "--grid.lora.rank=2", *[f"--config.{k}={v}" for k, v in overrides.items()]]
  proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  recorded = os.path.join(workdir, trial_log.SWEEP_CONFIG_FILE)  # written once the handlers are set
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline and not os.path.exists(recorded):
    time.sleep(0.05)
  assert proc.poll() is None, "the sweep ended before it could be interrupted"
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
  lines = [line for chunk in stderr.splitlines() for line in chunk.split("\r")
           if not re.match(r"^(\s*$|.*it/s|.*s/it|WARNING: All log messages|I0000 |To enable the following)", line)]
  assert len(lines) == 1, lines
  assert re.fullmatch(r"jpeft\.sweep: interrupted \(Ctrl-C\); .*\d+ finished trials? recorded in "
                      rf"{workdir}/trials\.jsonl; run the same command to resume \(it trains only the trials without "
                      r"a row\)\.", lines[0]), lines[0]
