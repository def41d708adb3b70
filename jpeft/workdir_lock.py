"""One process per workdir: an exclusive advisory lock held for a whole run or sweep.

Two processes writing one workdir would silently replace each other's checkpoints and results and interleave
their metrics (two sweeps would train every trial twice). `hold(workdir)` takes `fcntl.flock` on
`<workdir>/.jpeft.lock`; the kernel drops the lock when the process ends, kill -9 included, so a crashed run
never leaves a stale lock behind. The file also records who holds it, so the second process's error can say
which process to wait for.

flock is per host: on a filesystem shared by several hosts (NFS, GCS FUSE) it may not exclude a process on
another machine. In a multi-host job only process 0 takes the lock, since every host writes the same workdir.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

LOCK_FILE = ".jpeft.lock"


class WorkdirLockedError(OSError):
  """Another live process holds the workdir's lock. Its message names that process and how to proceed."""


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      info = json.load(f)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
    return f"pid {info['pid']} on host {info['host']}, started {started}: {info['command']}"
  except (OSError, ValueError, KeyError, TypeError):
    return "a process whose details could not be read"


@contextlib.contextmanager
def hold(workdir: str, program: str = "jpeft") -> Iterator[str]:
  """Holds the exclusive lock of `workdir` (created if missing) for the `with` block.

  Args:
    workdir: the run's or sweep's directory.
    program: what the error message calls the user's program.
  Yields:
    The lock file's path.
  Raises:
    WorkdirLockedError: another process holds the lock; nothing in the workdir was touched.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirLockedError(
          f"The workdir '{workdir}' is in use by another {program} process ({_holder(path)}). Two processes "
          "on one workdir would overwrite each other's checkpoints and results, so this one stopped without "
          "touching it. Wait for that process to finish (it releases the lock when it exits, also if killed), "
          "or pass another --workdir.") from None
    info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(), command=" ".join(sys.argv))
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    yield path
  finally:
    os.close(fd)  # closing the descriptor releases the flock
