"""What the command-line programs share: absl flag parsing that reports bad input in one paragraph."""
import sys
from typing import NoReturn, Sequence

import jax
import ml_collections
from absl import flags, logging
from ml_collections import config_flags


def _exit_unknown_field(error: Exception, argv: Sequence[str], program: str, dict_flags: Sequence[str]) -> NoReturn:
  missing = str(error).strip("\"'")
  overrides = [a.split("=")[0] for a in argv if any(a.startswith(f"--{name}.") for name in dict_flags)]
  culprit = next((o for o in overrides if o.split(".")[-1] == missing), f"--<...>.{missing}")
  print(f"{program}: error: {culprit} names no field ('{missing}' does not exist there). Check the spelling "
        "against configs/common.py, the method's config file or the method's grid; new fields cannot be "
        "added from the command line.", file=sys.stderr)
  sys.exit(1)


def parse_flags_or_exit(argv: list[str], program: str, dict_flags: Sequence[str] = ("config",)) -> list[str]:
  """absl's flag parsing; an unknown `--<dict flag>.<field>` or a bad value exits 1 with one clear line.

  Args:
    argv: the process arguments.
    program: the name the message starts with ('jpeft', 'jpeft.sweep').
    dict_flags: the ml_collections flags whose fields can be overridden (`--config.x`, `--grid.x`).
  """
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections' error for a field the dict does not have
    _exit_unknown_field(e, argv, program, dict_flags)
  except (flags.Error, ValueError, TypeError) as e:
    print(f"{program}: error: {str(e).rstrip('.')}. Run with --help for the flags.", file=sys.stderr)
  sys.exit(1)


def define_config_dict_or_exit(name: str, default: ml_collections.ConfigDict, help_string: str, program: str):
  """`config_flags.DEFINE_config_dict`, which applies `--<name>.<field>` overrides from sys.argv as it is
  defined (at import); an unknown field exits 1 with one clear line instead of an import-time traceback."""
  try:
    return config_flags.DEFINE_config_dict(name, default, help_string, lock_config=True)
  except (AttributeError, KeyError) as e:
    _exit_unknown_field(e, sys.argv, program, (name,))


def quiet_logging_unless_asked() -> None:
  """Logs warnings and above only, unless the user passed --verbosity: TFDS and Orbax log every file and save at
  INFO, which buries the progress bar and the results."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def set_cpu_devices(count: int) -> None:
  """Splits the host CPU into `count` XLA devices (e.g. one per core); call before JAX first uses a device.

  XLA runs one CPU device's small ops on one core, so a sweep whose trial axis is split over one device per
  core keeps every core busy without any communication between them. count <= 1 leaves XLA's single CPU
  device; accelerators are unaffected.
  """
  if count > 1:
    jax.config.update("jax_num_cpu_devices", count)
