"""Errors a run reports to the user as one paragraph (the CLI prints the message and exits with status 1)."""
import contextlib
from typing import Iterator


class RunError(Exception):
  """Base class: the message says what is wrong, the offending value, and how to fix it."""


class ConfigError(RunError, ValueError):
  """A config field has an impossible value; raised before any compute."""


class WorkdirError(RunError, OSError):
  """The workdir cannot be created or written."""


class NonFiniteLossError(RunError, FloatingPointError):
  """The loss or gradients became NaN / inf and `optim.nan_policy` is 'stop'."""


class WriteError(WorkdirError):
  """A file could not be written (a full disk, a quota, lost permissions); the message names the file, the
  cause and what was kept."""


RESUME_AFTER_FREEING = "free space (or fix permissions) and run the same command again"


@contextlib.contextmanager
def writing(path: str, kept: str = f"Files written before it are intact; {RESUME_AFTER_FREEING}.") -> Iterator[None]:
  """Within the block an OSError (ENOSPC, EDQUOT, EACCES, ...) becomes a WriteError naming `path`, its cause,
  and `kept`: what is intact and how to go on.

  A failed `write()` carries no file name ('[Errno 28] No space left on device'): this names it.
  """
  try:
    yield
  except WriteError:
    raise
  except OSError as e:
    cause = e.strerror or str(e)
    raise WriteError(f"Could not write '{path}': {cause}"
                     f"{f' (errno {e.errno})' if e.errno else ''}. {kept}") from e
