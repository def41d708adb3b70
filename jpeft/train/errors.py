"""Errors a run reports to the user as one paragraph (the CLI prints the message and exits with status 1)."""


class RunError(Exception):
  """Base class: the message says what is wrong, the offending value, and how to fix it."""


class ConfigError(RunError, ValueError):
  """A config field has an impossible value; raised before any compute."""


class WorkdirError(RunError, OSError):
  """The workdir cannot be created or written."""


class NonFiniteLossError(RunError, FloatingPointError):
  """The loss or gradients became NaN / inf and `optim.nan_policy` is 'stop'."""
