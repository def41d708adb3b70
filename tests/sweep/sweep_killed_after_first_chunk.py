"""`python -m jpeft.sweep FLAGS...` that kills itself with SIGKILL right after it records its first chunk of trials.

Usage: python tests/sweep/sweep_killed_after_first_chunk.py GO_FILE FLAGS...
Once the first chunk's rows are in trials.jsonl (flushed and fsynced, the append's lock released), the process
waits until GO_FILE exists ('': not at all; at most WAIT_SECONDS), then sends itself SIGKILL: to the workdir, the
same as `kill -9` from outside at that moment, but never late (a timer-based kill from the test can land after the
last trial on a loaded machine) and never early. A process that ends without recording anything (it found every
pair held by another) creates GO_FILE as it ends: of two such processes racing for a pair, the one that trains is
killed after the other has seen the pair held. Run it as its own program (subprocess, or
`tests.helpers.run_programs`).
"""
import os
import runpy
import signal
import sys
import time

from jpeft.sweep import trial_log

WAIT_SECONDS = 300  # for GO_FILE at most: a process whose peer never ends must not outlive the test


def main() -> None:
  go_file, flags = sys.argv[1], sys.argv[2:]
  append = trial_log.TrialLog.append

  def append_then_die(self, rows):
    append(self, rows)
    if not self.write:
      return
    deadline = time.time() + WAIT_SECONDS
    while go_file and not os.path.exists(go_file) and time.time() < deadline:
      time.sleep(0.05)
    sys.stdout.flush()  # what it printed so far, for a failing test's message
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

  trial_log.TrialLog.append = append_then_die
  sys.argv = ["jpeft.sweep", *flags]
  try:
    runpy.run_module("jpeft.sweep", run_name="__main__", alter_sys=True)
  finally:  # reached only by a process that recorded nothing (also when it failed: the other must not wait)
    if go_file:
      open(go_file, "w").close()


if __name__ == "__main__":
  main()
