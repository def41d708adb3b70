"""Errors a run reports to the user as one paragraph (the CLI prints the message and exits with status 1)."""
import contextlib
from typing import Iterator, Tuple, Type


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
  cause and what was kept.

  Attributes:
    path: the file.
    cause: why, e.g. 'No space left on device (errno 28)'.
  """

  def __init__(self, path: str, cause: str, kept: str):
    super().__init__(f"Could not write '{path}': {cause}. {kept}")
    self.path, self.cause = path, cause


RESUME_AFTER_FREEING = "free space (or fix permissions) and run the same command again"
RUN_KEPT = f"The checkpoints saved before it are intact; {RESUME_AFTER_FREEING} to resume from the newest."


def _cause(error: Exception) -> str:
  if isinstance(error, OSError) and error.strerror:
    return f"{error.strerror} (errno {error.errno})"
  lines = str(error).strip().splitlines()  # TensorFlow's and TensorStore's errors can run to many lines
  return f"{type(error).__name__}: {lines[0] if lines else ''}"


@contextlib.contextmanager
def writing(path: str, kept: str = f"Files written before it are intact; {RESUME_AFTER_FREEING}.",
            catch: Tuple[Type[Exception], ...] = (OSError,)) -> Iterator[None]:
  """Within the block an error of `catch` (an OSError: ENOSPC, EDQUOT, EACCES, ...) becomes a WriteError naming
  `path`, its cause, and `kept`: what is intact and how to go on.

  A failed `write()` carries no file name ('[Errno 28] No space left on device'): this names it. Writers whose
  failures are not OSErrors (TensorFlow's event files, Orbax) add their error types to `catch`.
  """
  try:
    yield
  except WriteError:
    raise
  except catch as e:
    raise WriteError(path, _cause(e), kept) from e
