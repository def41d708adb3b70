"""Ctrl-C and SIGTERM: a run stops between steps with one line and exit status 130 / 143, SIGTERM (how a
preemptible VM is stopped) saves a checkpoint of the step reached, and the same command resumes to the end an
uninterrupted run reaches."""
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import REPO, cli_args, load_config, tiny_overrides
from jpeft import interrupts
from jpeft.train import checkpointing, trainer, writers

# 64 training images in batches of 16: 4 steps per epoch, 16 steps in all; a checkpoint every 2 epochs.
EPOCHS, STEPS = 4, 16


@pytest.fixture(scope="module")
def overrides(folder_root):
  return tiny_overrides(folder_root, **{"optim.epochs": EPOCHS, "checkpoint_every_epochs": 2})


@pytest.fixture(scope="module")
def reference(overrides, tmp_path_factory):
  """An uninterrupted run: (workdir, result)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  return workdir, trainer.run(load_config(overrides), workdir)


def _final_trainable(workdir: str) -> dict:
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), create=False)
  try:
    state, _ = ckpt.restore(STEPS, None)
  finally:
    ckpt.close()
  return {k: np.asarray(v) for k, v in state["trainable"].items()}


def _assert_same_run(workdir: str, reference) -> None:
  ref_dir, ref_result = reference
  result = json.loads(open(os.path.join(workdir, "result.json")).read())
  assert result["launches"] == 2  # stopped once, resumed once
  assert result["evals"] == ref_result["evals"] and result["steps"] == ref_result["steps"] == STEPS
  np.testing.assert_array_equal(np.load(os.path.join(workdir, "logits_val200.npy")),
                                np.load(os.path.join(ref_dir, "logits_val200.npy")))
  final, ref_final = _final_trainable(workdir), _final_trainable(ref_dir)
  assert final.keys() == ref_final.keys()
  for name in final:
    np.testing.assert_array_equal(final[name], ref_final[name], err_msg=name)


def test_sigterm_mid_epoch_saves_that_step_and_the_resumed_run_is_bit_identical(overrides, reference, tmp_path,
                                                                                 monkeypatch):
  """SIGTERM at step 6 (mid-epoch, between periodic checkpoints): the loop saves step 6 and stops; the rerun
  resumes inside the epoch and ends where the uninterrupted run ends."""
  def not_caught(signum, frame):  # what the test sees if the run does not catch SIGTERM itself
    raise AssertionError("SIGTERM was not handled by the run")
  previous = signal.signal(signal.SIGTERM, not_caught)
  write = writers.MetricWriter.write

  def write_then_signal(self, step, scalars, **fields):
    write(self, step, scalars, **fields)
    if step == 6 and "train/loss" in scalars:
      os.kill(os.getpid(), signal.SIGTERM)  # delivered here, in the main thread, while the loop runs
  monkeypatch.setattr(writers.MetricWriter, "write", write_then_signal)
  workdir = str(tmp_path / "run")
  try:
    with pytest.raises(interrupts.Interrupted) as stopped:
      trainer.run(load_config(overrides), workdir)
  finally:
    signal.signal(signal.SIGTERM, previous)
  monkeypatch.undo()
  assert stopped.value.exit_code == 143
  assert str(stopped.value) == (f"stopped by SIGTERM at step 6 of {STEPS}; saved a checkpoint of step 6 in "
                                f"{os.path.abspath(workdir)}/checkpoints; run the same command to resume.")
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["6"]  # the periodic ones are at steps 8 and 16
  assert not os.path.exists(os.path.join(workdir, "result.json"))

  trainer.run(load_config(overrides), workdir)
  _assert_same_run(workdir, reference)


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
  """One compilation cache for this module's runs: the first compiles, the others load (what is tested here
  does not depend on compiling)."""
  return str(tmp_path_factory.mktemp("xla"))


def _start(overrides, workdir: str, cache: str) -> subprocess.Popen:
  command = [sys.executable, "-m", "jpeft.main", "--config=jpeft/config_base.py", f"--workdir={workdir}",
             f"--compilation_cache={cache}", *cli_args(overrides)]
  return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_once_training(proc: subprocess.Popen, workdir: str, signum: int) -> tuple[int, str]:
  """Sends `signum` once the run has logged its first steps (its handlers are set by then); returns the exit
  status and stderr."""
  metrics = os.path.join(workdir, writers.JSONL)
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline and not os.path.exists(metrics):
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before it could be signalled"
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=300)
  return proc.returncode, stderr


def _lines(stderr: str) -> list[str]:
  """stderr without the progress bar and the C++ libraries' start-up notices."""
  lines = [line for chunk in stderr.splitlines() for line in chunk.split("\r")]
  noise = re.compile(r"^(\s*$|.*it/s|.*s/it|WARNING: All log messages|I0000 |To enable the following)")
  return [line for line in lines if not noise.match(line)]


def test_sigterm_to_the_cli_exits_143_with_one_line_and_the_same_command_resumes(overrides, reference, tmp_path,
                                                                                  compilation_cache):
  workdir = str(tmp_path / "run")
  code, stderr = _signal_once_training(_start(overrides, workdir, compilation_cache), workdir, signal.SIGTERM)
  assert code == 143, stderr[-3000:]
  assert "Traceback" not in stderr
  lines = _lines(stderr)
  assert len(lines) == 1, lines
  stopped = re.fullmatch(r"jpeft: stopped by SIGTERM at step (\d+) of 16; (saved a checkpoint of step|the newest "
                         r"checkpoint is step) (\d+) in (\S+); run the same command to resume\.", lines[0])
  assert stopped, lines[0]
  step, saved = int(stopped.group(1)), int(stopped.group(3))
  assert step == saved  # the step reached is on disk
  assert interrupts.newest_checkpoint(os.path.join(workdir, "checkpoints")) == step

  rerun = _start(overrides, workdir, compilation_cache)
  _, rerun_err = rerun.communicate(timeout=300)
  assert rerun.returncode == 0, rerun_err[-3000:]
  _assert_same_run(workdir, reference)


def test_ctrl_c_to_the_cli_exits_130_with_one_line_and_no_traceback(overrides, tmp_path, compilation_cache):
  workdir = str(tmp_path / "run")
  longer = dict(overrides, **{"optim.epochs": 20})  # so that the signal surely lands while it trains
  code, stderr = _signal_once_training(_start(longer, workdir, compilation_cache), workdir, signal.SIGINT)
  assert code == 130, stderr[-3000:]
  assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
  lines = _lines(stderr)
  assert len(lines) == 1 and lines[0].startswith("jpeft: interrupted (Ctrl-C) at step "), lines
  assert lines[0].endswith("; run the same command to resume.")


def test_a_signal_outside_the_training_loop_still_ends_in_one_line(tmp_path):
  """Raised mode (setup, compiling): the signal raises at once; the CLI names the newest checkpoint."""
  error = interrupts.Interrupted(signal.SIGTERM)
  assert error.exit_code == 143 and interrupts.Interrupted(signal.SIGINT).exit_code == 130
  checkpoints = str(tmp_path / "checkpoints")
  assert interrupts.describe(error, checkpoints) == (
      f"stopped by SIGTERM; no checkpoint was saved yet (in {checkpoints}), so the run starts again from step 0; "
      "run the same command to resume.")
  os.makedirs(os.path.join(checkpoints, "8"))
  os.makedirs(os.path.join(checkpoints, "12.orbax-checkpoint-tmp"))  # unfinished: not a checkpoint
  assert "the newest checkpoint is step 8 in" in interrupts.describe(error, checkpoints)
  with pytest.raises(interrupts.Interrupted) as raised:
    with interrupts.raised():
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(5)  # the handler raises in the main thread before this ends
  assert raised.value.signum == signal.SIGTERM and raised.value.message == ""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_python_dropped_in_a_gc_callback_is_raised_by_the_next_loop_and_on_leaving():
  """JAX runs Python in garbage-collection callbacks; a signal landing there raises inside the callback, and
  Python prints and drops that exception. The signal must still stop the program."""
  def drop_a_signal():
    handler = signal.getsignal(signal.SIGINT)

    def callback(phase, info):
      del phase, info
      gc.callbacks.remove(callback)
      handler(signal.SIGINT, None)  # as the interpreter would call it while the callback runs

    gc.callbacks.append(callback)
    gc.collect()  # "Exception ignored in: <function ...callback>": the Interrupted is gone

  with pytest.raises(interrupts.Interrupted) as loop:
    with interrupts.raised():
      drop_a_signal()
      with interrupts.deferred():
        pytest.fail("a training loop started after the signal")
  assert loop.value.signum == signal.SIGINT
  with pytest.raises(interrupts.Interrupted) as leaving:
    with interrupts.raised():
      drop_a_signal()
  assert leaving.value.signum == signal.SIGINT
