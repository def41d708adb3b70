"""Advisory locks on a workdir: one run per workdir, many sweep processes sharing one (one per (task, method)).

Two processes writing one workdir would silently replace each other's checkpoints and results and interleave
their metrics. `hold(workdir)` takes `fcntl.flock` on `<workdir>/.jpeft.lock`, exclusively for a run
(`jpeft.main`), shared for a sweep process (`jpeft.sweep`, whose processes coordinate per (task, method) pair
with `try_lock` on a file of each pair, and write the files they share under `locked`). The kernel drops a
lock when its process ends, kill -9 included, so a crashed process never leaves a stale lock behind. The lock
file also records who took it last, so the refused process's error can say which process to wait for.

flock on a file system shared by several hosts: NFSv4 (and NFSv3 with a lock daemon) carries it to the server,
so it excludes processes on every host; a file system whose flock is host-local (Lustre mounted with
`localflock`, some FUSE mounts) excludes only processes on the same host, and one without flock (Lustre without
`flock`) makes every lock fail with an OSError that jpeft reports. See docs/how-to/cluster.md. In a multi-host
jax.distributed job only process 0 takes the locks, since every host writes the same workdir.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator, Optional

LOCK_FILE = ".jpeft.lock"


class WorkdirLockedError(OSError):
  """Another live process holds the workdir's lock. Its message names that process and how to proceed."""


class FlockUnsupportedError(WorkdirLockedError):
  """The workdir's file system has no flock: no lock can be taken there (reported as the programs report a
  held workdir: one line, exit 1)."""


def holder_info() -> dict:
  """Who is taking a lock: {'pid', 'host', 'started' (epoch seconds), 'command'}."""
  return dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(), command=" ".join(sys.argv))


def read_info(path: str) -> Optional[dict]:
  """The JSON record at the start of a lock file, or None when missing or unreadable."""
  try:
    with open(path) as f:
      info = json.loads(f.read() or "null")
    return info if isinstance(info, dict) else None
  except (OSError, ValueError):
    return None


def describe(info: Optional[dict]) -> str:
  """'pid 12 on host h, started 2026-01-01 10:00:00: <command>' for a lock file's record."""
  try:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
    return f"pid {info['pid']} on host {info['host']}, started {started}: {info['command']}"
  except (KeyError, TypeError, ValueError, OverflowError):
    return "a process whose details could not be read"


def write_info(fd: int, info: dict) -> None:
  """Replaces a held lock file's record in one write, padded over the previous one (no truncation), so a
  reader sees the old record or the new one, never an empty file."""
  data = json.dumps(info).encode()
  size = os.fstat(fd).st_size
  os.pwrite(fd, data + b" " * max(0, size - len(data)), 0)


def _flock_unsupported(path: str, error: OSError) -> FlockUnsupportedError:
  return FlockUnsupportedError(
      f"Cannot lock '{path}' ({error.strerror}): the file system does not support flock. Put the workdir on a "
      "local disk or on a shared file system with locking (NFSv4, Lustre mounted with -o flock); see "
      "docs/how-to/cluster.md.")


def try_lock(path: str, shared: bool = False, create: bool = True) -> Optional[int]:
  """Takes flock on `path` without waiting; the open descriptor (close it to release), or None when another
  process holds a conflicting lock (or the file is missing and `create` is False)."""
  try:
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
  except FileNotFoundError:
    if create:
      raise
    return None
  try:
    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    return fd
  except BlockingIOError:
    os.close(fd)
    return None
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
      raise _flock_unsupported(path, e) from None
    raise


@contextlib.contextmanager
def locked(path: str) -> Iterator[int]:
  """Holds an exclusive flock on `path` (created if missing) for the `with` block, waiting for it: the short
  critical sections in which sweep processes write the files they share."""
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
      if e.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
        raise _flock_unsupported(path, e) from None
      raise
    yield fd
  finally:
    os.close(fd)


def _refused(workdir: str, program: str, path: str) -> WorkdirLockedError:
  return WorkdirLockedError(
      f"The workdir '{workdir}' is in use by another {program} process ({describe(read_info(path))}). Two "
      "processes on one workdir would overwrite each other's checkpoints and results, so this one stopped "
      "without touching it. Wait for that process to finish (it releases the lock when it exits, also if "
      "killed), or pass another --workdir.")


def join(workdir: str, program: str = "jpeft") -> tuple[int, bool]:
  """Takes the workdir's lock shared, as one of a sweep's processes (call under the sweep's meta lock, so
  that `alone` stays true until the caller has used it).

  Returns:
    (descriptor to close to release it, alone: no other process held the lock).
  Raises:
    WorkdirLockedError: a run (`jpeft.main`) holds the workdir alone.
  """
  path = os.path.join(workdir, LOCK_FILE)
  fd = try_lock(path)
  alone = fd is not None
  if alone:
    fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive to shared: other sweep processes may join
  else:
    fd = try_lock(path, shared=True)
    if fd is None:
      raise _refused(workdir, "jpeft", path)
  write_info(fd, holder_info())
  return fd, alone


@contextlib.contextmanager
def hold(workdir: str, program: str = "jpeft") -> Iterator[str]:
  """Holds the lock of `workdir` (created if missing) exclusively for the `with` block (a run).

  Args:
    workdir: the run's or sweep's directory.
    program: what the error message calls the user's program.
  Yields:
    The lock file's path.
  Raises:
    WorkdirLockedError: another process holds a conflicting lock; nothing in the workdir was touched.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = try_lock(path)
  if fd is None:
    raise _refused(workdir, program, path)
  try:
    write_info(fd, holder_info())
    yield path
  finally:
    os.close(fd)  # closing the descriptor releases the flock
