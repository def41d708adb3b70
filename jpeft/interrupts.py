"""Ctrl-C (SIGINT) and SIGTERM: a run or a sweep stops in one line and exits 130 / 143 (128 + the signal).

SIGTERM is how preemptible cloud and TPU VMs (and SLURM, Kubernetes, `kill`) stop a job, usually with some
seconds of grace before SIGKILL. As in big_vision and MaxText, the signal handler does no work: inside a
training loop (`deferred`) it only records the signal, and the loop checks the record between steps, saves
a checkpoint of the step reached and raises `Interrupted`. Outside a loop (`raised`: loading data, compiling,
evaluating) either signal raises `Interrupted` at once, as Ctrl-C raises KeyboardInterrupt; a second signal
while the loop is stopping does too. The programs print the exception's one line and exit with its status.

Signal handlers belong to the process and can only be set from its main thread: elsewhere (a worker thread)
both context managers change nothing, and the signals keep Python's defaults.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESUME = "run the same command to resume"


class Interrupted(BaseException):
  """The process got SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt: no `except Exception` on the
  way up (a checkpoint reader's, a damaged-file check's) takes it for an error of its own.

  Args:
    signum: signal.SIGINT or signal.SIGTERM.
    message: where the work stopped and what was kept (one line), or '' if the raiser does not know: the
      program then says what it can (`describe`).
  """

  def __init__(self, signum: int, message: str = ""):
    super().__init__(message)
    self.signum = int(signum)
    self.message = message

  @property
  def exit_code(self) -> int:
    """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + self.signum



def cause(signum: int) -> str:
  """'interrupted (Ctrl-C)' or 'stopped by SIGTERM'."""
  return "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


class StopRequest:
  """What a `deferred` block's handler recorded: the first signal's number (None: none yet)."""

  def __init__(self):
    self.signum: Optional[int] = None

  def __bool__(self) -> bool:
    return self.signum is not None


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handlers(handler) -> Iterator[None]:
  if not _in_main_thread():
    yield
    return
  previous = {s: signal.signal(s, handler) for s in SIGNALS}
  try:
    yield
  finally:
    for s, old in previous.items():
      signal.signal(s, old)


def _raise(signum, frame):
  del frame
  raise Interrupted(signum)


class _Raiser:
  """`raised`'s handler: raises `Interrupted` and also records the signal, because Python ignores (prints and
  drops) an exception raised inside a garbage-collection callback, such as JAX's, where a signal can land."""

  def __init__(self):
    self.request = StopRequest()

  def __call__(self, signum, frame):
    self.request.signum = signum
    _raise(signum, frame)


def _dropped_signal() -> Optional[int]:
  """A signal an enclosing `raised` block recorded but whose exception Python dropped (None: none)."""
  handler = signal.getsignal(signal.SIGINT) if _in_main_thread() else None
  return handler.request.signum if isinstance(handler, _Raiser) else None


@contextlib.contextmanager
def raised() -> Iterator[None]:
  """Within the block SIGINT and SIGTERM raise `Interrupted` wherever the main thread is (SIGTERM would
  otherwise end the process at once, with no word and nothing saved). A signal whose exception was dropped
  (see `_Raiser`) is raised by the next `deferred` block inside, or on leaving this one."""
  raiser = _Raiser()
  with _handlers(raiser):
    yield
  if raiser.request:
    raise Interrupted(raiser.request.signum)


@contextlib.contextmanager
def deferred(enabled: bool = True) -> Iterator[StopRequest]:
  """Within the block the first SIGINT / SIGTERM only sets the yielded request's `signum`; the caller checks
  it between steps, saves what it can and raises `Interrupted`. A second signal raises at once. If the block
  ends normally with a signal recorded but not acted on (it came during the last step), `Interrupted` is
  raised on leaving it. With `enabled` False the handlers are left as they are (the request stays unset)."""
  request = StopRequest()
  if not enabled:
    yield request
    return
  dropped = _dropped_signal()
  if dropped is not None:
    raise Interrupted(dropped)

  def record(signum, frame):
    if request:
      _raise(signum, frame)
    request.signum = signum

  with _handlers(record):
    yield request
  if request:
    raise Interrupted(request.signum)


def newest_checkpoint(directory: str) -> Optional[int]:
  """The newest complete step in an orbax checkpoint directory (its all-digit entries), without opening it."""
  try:
    steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  except OSError:
    return None
  return max(steps) if steps else None


def run_message(signum: int, step: Optional[int], total: Optional[int], directory: str,
                saved: Optional[int]) -> str:
  """The run's one line: the step reached, the newest checkpoint, how to resume."""
  reached = f" at step {step} of {total}" if step is not None else ""
  if saved is None:
    kept = f"no checkpoint was saved yet (in {directory}), so the run starts again from step 0"
  elif saved == step:
    kept = f"saved a checkpoint of step {saved} in {directory}"
  else:
    redone = " (steps after it will be redone)" if step is not None else ""
    kept = f"the newest checkpoint is step {saved} in {directory}{redone}"
  return f"{cause(signum)}{reached}; {kept}; {RESUME}."


def describe(error: Interrupted, checkpoints: str) -> str:
  """The error's own line, or (raised where the step was unknown: setup, compiling) one naming the newest
  checkpoint in the `checkpoints` directory."""
  return error.message or run_message(error.signum, None, None, checkpoints, newest_checkpoint(checkpoints))


def sweep_message(error: Interrupted, trials_file: str) -> str:
  """The sweep's one line: where it stopped (the error's message, if any), the finished trials kept."""
  try:
    with open(trials_file, "rb") as f:
      recorded = sum(1 for line in f.read().split(b"\n")[:-1] if line.strip())
  except OSError:
    recorded = 0
  stopped = f"; {error.message}" if error.message else ""
  return (f"{cause(error.signum)}{stopped}; {recorded} finished trial{'' if recorded == 1 else 's'} "
          f"recorded in {trials_file}; {RESUME} (it trains only the trials without a row).")
