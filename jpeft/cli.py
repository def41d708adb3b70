"""What the command-line programs share: absl flag parsing that reports bad input in one paragraph, and the
errors they report that way."""
import contextlib
import difflib
import importlib.util
import logging as pylogging
import os
import re
import sys
import traceback
from typing import Callable, Iterator, NoReturn, Optional, Sequence

import jax
import jax.monitoring
import ml_collections
from absl import app, flags, logging
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache
from ml_collections import config_flags

import jpeft
from jpeft.checkpoints import CheckpointError
from jpeft.data import DataError
from jpeft.train.errors import RunError
from jpeft.workdir_lock import WorkdirLockedError

# A user mistake or the environment: the programs print the message (what is wrong, how to fix it) and exit 1,
# without a traceback; nothing already saved is lost.
USER_ERRORS = (RunError, DataError, CheckpointError, WorkdirLockedError)

# The define_* helpers below define flags for the program that calls them: absl then lists those flags under
# that program in its --help, not under this module (which would hide them from `python -m <program> --help`).
flags.disclaim_key_flags()


def _overrides(argv: Sequence[str], name: str) -> list[str]:
  """The field paths that argv overrides in the dict flag `name`, in order: ['optim.lr'] for --config.optim.lr=1
  (as ml_collections reads them: one or two dashes, and --no<name>.<field> for a False boolean)."""
  pattern = re.compile(rf"-{{1,2}}(no)?{re.escape(name)}\.([^=]*)")
  return [m.group(2) for m in map(pattern.match, argv) if m]


def unknown_field(config, name: str, override: str) -> Optional[str]:
  """One line if the field path `override` of the dict flag `name` names a field that `config` lacks, e.g.
  "--config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"; else None."""
  node, walked = config, []
  for part in override.split("."):
    where = ".".join(walked) or f"the {name}"
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      return f"--{name}.{override}: {where} is a {type(node).__name__}, not a group of fields"
    if part not in node:
      keys = sorted(str(k) for k in node.keys())
      close = difflib.get_close_matches(part, keys, 1)
      hint = f"did you mean '{close[0]}'?" if close else f"its fields are {', '.join(keys) or '(none)'}"
      return f"--{name}.{override}: {where} has no field '{part}'; {hint}"
    node = node[part]
    walked.append(part)
  return None


def _exit_unknown_field(error: Exception, argv: Sequence[str], program: str, configs: dict) -> NoReturn:
  """Exits 1 naming the first override in argv of a field its config (`configs`: {flag name: config}) lacks;
  `error` is ml_collections' own report (a KeyError or AttributeError with a multi-line repr), the fallback."""
  for name, config in configs.items():
    for override in _overrides(argv, name) if config is not None else ():
      line = unknown_field(config, name, override)
      if line:
        print(f"{program}: error: {line}", file=sys.stderr)
        sys.exit(1)
  said = " ".join(str(error.args[0] if error.args else error).split())
  print(f"{program}: error: {said}. Check the spelling against jpeft/config_base.py, the method's config file or "
        "the method's grid; new fields cannot be added from the command line.", file=sys.stderr)
  sys.exit(1)


def _config_of(name: str, argv: Sequence[str]):
  """The dict flag `name`'s config before argv's overrides (its config file loaded again), or None."""
  flag = flags.FLAGS[name]
  try:
    if isinstance(flag.parser, config_flags.config_flags.ConfigFileFlagParser):
      path = _flag_value(argv, name)
      return flag.parser.parse(path) if path is not None else flag.value
    return flag.value
  except Exception:  # pylint: disable=broad-except  (the report falls back to ml_collections' message)
    return None


def _flag_value(argv: Sequence[str], name: str) -> Optional[str]:
  """The last value given to --name in argv (as `--name=v` or `--name v`), or None."""
  value = None
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    flag, has_value, given = arg.lstrip("-").partition("=")
    if arg.startswith("-") and flag == name:
      value = given if has_value else (argv[i + 1] if i + 1 < len(argv) else None)
  return value


def _config_file_failure(error: BaseException, path: str) -> Optional[str]:
  """What went wrong inside the config file `path` if `error` (or an error it chains from) was raised there."""
  target = os.path.realpath(path)
  while error is not None:
    if isinstance(error, SyntaxError) and error.filename and os.path.realpath(error.filename) == target:
      return f"SyntaxError at line {error.lineno}: {error.msg}"
    if isinstance(error, AttributeError) and error.name == "get_config":
      return "it defines no get_config() (it must return an ml_collections.ConfigDict)"
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.realpath(f.filename) == target]
    if lines:
      return f"{type(error).__name__} at line {lines[-1]}: {error}"
    error = error.__cause__ or error.__context__
  return None


def _config_files(argv: Sequence[str], dict_flags: Sequence[str]) -> dict[str, str]:
  """{flag name: path} of the config-file flags among `dict_flags` given in argv (the part before a ':')."""
  files = {}
  for name in dict_flags:
    value = _flag_value(argv, name)
    if value is not None and isinstance(flags.FLAGS[name].parser, config_flags.config_flags.ConfigFileFlagParser):
      files[name] = value.split(":", 1)[0]
  return files


def shipped_configs_dir() -> str:
  """The folder of the config files jpeft ships: the installed package `jpeft.configs` (setup.py installs the
  checkout's top-level configs/ under that name), else the checkout's configs/ beside the jpeft package."""
  spec = importlib.util.find_spec("jpeft.configs")
  if spec is not None and spec.submodule_search_locations:
    return list(spec.submodule_search_locations)[0]
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(jpeft.__file__))), "configs")


def shipped_config_names() -> list[str]:
  """The names `--config=<name>` accepts (the shipped config files without '.py'), sorted."""
  folder = shipped_configs_dir()
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def resolve_config_path(value: str) -> str:
  """`value` of a config-file flag ('path[:options]') with a shipped config's name ('vtab_lora', 'vtab_lora.py',
  or 'configs/vtab_lora.py' run outside a checkout) replaced by that file's path; anything else unchanged. A file
  that exists at the given path always wins, so a user's own configs/ is never shadowed."""
  path, colon, options = value.partition(":")
  if os.path.isfile(path) or os.path.dirname(path) not in ("", "configs"):
    return value
  stem = os.path.basename(path)
  stem = stem[:-3] if stem.endswith(".py") else stem
  shipped = os.path.join(shipped_configs_dir(), stem + ".py")
  return shipped + colon + options if stem and os.path.isfile(shipped) else value


def _with_shipped_configs(argv: list[str], dict_flags: Sequence[str]) -> list[str]:
  """argv with the values of config-file flags resolved by `resolve_config_path`."""
  # A program run through `run_program` may define none of them (jpeft.bench.mfu takes no --config).
  names = [n for n in dict_flags
           if n in flags.FLAGS and isinstance(flags.FLAGS[n].parser, config_flags.config_flags.ConfigFileFlagParser)]
  out = list(argv[:1])
  it = iter(range(1, len(argv)))
  for i in it:
    arg = argv[i]
    if arg == "--":
      out.extend(argv[i:])
      break
    flag, has_value, given = arg.lstrip("-").partition("=")
    if arg.startswith("-") and flag in names:
      if has_value:
        arg = f"--{flag}={resolve_config_path(given)}"
      elif i + 1 < len(argv):
        out.append(arg)
        arg = resolve_config_path(argv[next(it)])
    out.append(arg)
  return out


_HELP_FLAGS = frozenset({"--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"})


def parse_flags_or_exit(argv: list[str], program: str, dict_flags: Sequence[str] = ("config",)) -> list[str]:
  """absl's flag parsing; a missing or failing config file, an unknown `--<dict flag>.<field>` or a bad value
  exits 1 with one clear paragraph.

  Args:
    argv: the process arguments.
    program: the name the message starts with ('jpeft', 'jpeft.sweep').
    dict_flags: the ml_collections flags whose fields can be overridden (`--config.x`, `--grid.x`).
  """
  argv = _with_shipped_configs(argv, dict_flags)
  files = _config_files(argv, dict_flags)
  for name, path in files.items():
    if not os.path.isfile(path):
      print(f"{program}: error: --{name}={path}: no such file. Relative paths start from the current directory "
            f"({os.getcwd()}); pass the path of a Python config file, e.g. --{name}=configs/vtab_lora.py, or "
            f"the name of one jpeft ships, e.g. --{name}=vtab_lora ({', '.join(shipped_config_names()[:4])}, "
            "...).", file=sys.stderr)
      sys.exit(1)
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:
    # absl prints --help / --helpfull and exits 1; asking for help is not a failure.
    if e.code == 1 and _HELP_FLAGS.intersection(argv[1:]):
      sys.exit(0)
    raise
  except Exception as e:  # pylint: disable=broad-except  (the config file's code can raise anything)
    for name, path in files.items():
      failure = _config_file_failure(e, path)
      if failure:
        print(f"{program}: error: the config file --{name}={path} failed to load: {failure}. Fix the file, or "
              "pass another config file.", file=sys.stderr)
        sys.exit(1)
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections' error for a field the dict does not have
      _exit_unknown_field(e, argv, program, {name: _config_of(name, argv) for name in dict_flags})
    if not isinstance(e, (flags.Error, ValueError, TypeError)):
      raise
    print(f"{program}: error: {str(e).rstrip('.')}. Run with --help for the flags.", file=sys.stderr)
  sys.exit(1)


def run_program(main: Callable[[list[str]], None], program: str, dict_flags: Sequence[str] = ("config",),
                errors: tuple[type[BaseException], ...] = ()) -> None:
  """`absl.app.run(main)` with `parse_flags_or_exit`'s flag parsing; a user error raised by main (USER_ERRORS or
  `errors`) exits 1 with one line, '<program>: error: <message>', instead of a traceback. Logs warnings and
  above only unless --verbosity is given."""

  def reporting(argv):
    quiet_logging_unless_asked()
    try:
      main(argv)
    except (*USER_ERRORS, *errors) as e:
      print(f"{program}: error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(reporting, flags_parser=lambda argv: parse_flags_or_exit(argv, program, dict_flags))


def define_config_dict_or_exit(name: str, default: ml_collections.ConfigDict, help_string: str, program: str):
  """`config_flags.DEFINE_config_dict`, which applies `--<name>.<field>` overrides from sys.argv as it is
  defined (at import); an unknown field exits 1 with one clear line instead of an import-time traceback."""
  try:
    return config_flags.DEFINE_config_dict(name, default, help_string, lock_config=True)
  except (AttributeError, KeyError) as e:
    _exit_unknown_field(e, sys.argv, program, {name: default})


def define_config_file_or_exit(name: str, default: str, help_string: str, program: str):
  """`config_flags.DEFINE_config_file` with a default file, which it loads, with argv's `--<name>.<field>`
  overrides, as it is defined (at import) unless argv names another file; an unknown field exits 1 with one line."""
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, lock_config=True)
  except (AttributeError, KeyError) as e:
    config = config_flags.config_flags.ConfigFileFlagParser(name).parse(default)
    _exit_unknown_field(e, sys.argv, program, {name: config})


def define_run_reading_flags(uses: str, recorded_in: str, *, overwrite: bool) -> tuple:
  """The flags of programs that read finished runs and write files from them (jpeft.export, jpeft.wise):
  --allow_unfinished, and --overwrite where the program refuses existing outputs (`jpeft.outputs`).

  Args:
    uses: what an unfinished run's newest intact checkpoint is to the program, e.g. 'exported'.
    recorded_in: where that checkpoint's step is recorded, e.g. 'the file (and printed)'.
    overwrite: also define --overwrite.
  Returns:
    (allow_unfinished, overwrite) flag holders; overwrite is None when not defined.
  """
  allow_unfinished = flags.DEFINE_bool(
      "allow_unfinished", False, "Accept a run that did not reach its last step (or whose newest checkpoint is "
      f"damaged): its newest intact checkpoint is {uses}; the step is recorded in {recorded_in}.")
  if not overwrite:
    return allow_unfinished, None
  return allow_unfinished, flags.DEFINE_bool(
      "overwrite", False, "Replace an existing output file (never a run's own records: result.json, checkpoints/, "
      "...).")


def quiet_logging_unless_asked() -> None:
  """Logs warnings and above only, and no Orbax traceback, unless the user passed --verbosity: TFDS and Orbax
  log every file and save at INFO, which buries the progress bar and the results."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    # TFDS warns "Variant folder ... has no dataset_info.json" each time it is about to generate a dataset
    # (every Mini VTAB task's first use): expected, and it opens the demo's output.
    logging.get_absl_logger().addFilter(_no_dataset_info_warning)  # the same function twice is added once
    logging.get_absl_logger().addFilter(_no_orbax_traceback)
    pylogging.getLogger("asyncio").addFilter(_no_orbax_task_report)
    sys.unraisablehook = _no_closed_loop_report


def _no_dataset_info_warning(record) -> bool:
  """False for TFDS's warning that a dataset about to be prepared has no dataset_info.json yet."""
  return "has no dataset_info.json" not in record.getMessage()


def _no_orbax_traceback(record: pylogging.LogRecord) -> bool:
  """False for Orbax's logged tracebacks: a failed asynchronous checkpoint write (a full disk) is logged with its
  traceback by each writer thread (seven of them, ~480 lines) and then raised from the next save, where the
  program reports it in one line (`checkpointing.CheckpointWriteError`)."""
  return not (record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname)


def _no_orbax_task_report(record: pylogging.LogRecord) -> bool:
  """False for asyncio's 'Task / Future exception was never retrieved' about an Orbax checkpoint write: after a
  failed asynchronous write (a full disk), sibling write tasks fail too and nobody awaits them, while the first
  failure is what the program reports, in one line."""
  message = record.getMessage()
  if "exception was never retrieved" not in message:
    return True
  exc_info = record.exc_info or (None, None, None)
  frames = traceback.extract_tb(exc_info[2]) if exc_info[2] is not None else []
  about_orbax = (".orbax-checkpoint" in message or ".orbax-checkpoint" in str(exc_info[1])
                 or any(f"{os.sep}orbax{os.sep}" in frame.filename for frame in frames))
  return not about_orbax


def _no_closed_loop_report(unraisable) -> None:
  """sys.unraisablehook, silent for asyncio's 'Event loop is closed': after a failed asynchronous checkpoint
  write, TensorStore can still complete a future of the event loop Orbax has closed, and reports that error as
  unraisable (a bare traceback), while the write's own error is what the program reports."""
  if not (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"):
    sys.__unraisablehook__(unraisable)


def start_distributed(config: ml_collections.ConfigDict, program: str) -> None:
  """jax.distributed.initialize from `config.distributed` if enabled (before anything touches a device); a
  failure exits 1 with one paragraph naming the fields to set."""
  if not config.distributed.enabled:
    return
  d = config.distributed
  try:
    # Fields left None are read from the cluster's environment (Cloud TPU, SLURM, Open MPI).
    jax.distributed.initialize(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                               process_id=d.process_id)
  except (ValueError, TypeError, RuntimeError) as e:
    print(f"{program}: error: --config.distributed.enabled=True, but jax.distributed could not start: {e}. On a "
          "Cloud TPU pod slice or under SLURM / Open MPI, leave distributed.coordinator_address, num_processes "
          "and process_id unset (they are read from the environment); elsewhere set all three, e.g. "
          "--config.distributed.coordinator_address=<process 0's host>:<free port> "
          "--config.distributed.num_processes=2 --config.distributed.process_id=<0 or 1>.", file=sys.stderr)
    sys.exit(1)


def set_cpu_devices(count: int) -> None:
  """Splits the host CPU into `count` XLA devices (e.g. one per core); call before JAX first uses a device.

  XLA runs one CPU device's small ops on one core, so a sweep whose trial axis is split over one device per
  core keeps every core busy without any communication between them. count <= 1 leaves XLA's single CPU
  device; accelerators are unaffected.
  """
  if count > 1:
    jax.config.update("jax_num_cpu_devices", count)


# Where compiled XLA programs are kept between runs unless --compilation_cache says otherwise; the environment
# variable lets a whole test suite or cluster job move it (or turn it off with '') without editing commands.
COMPILATION_CACHE_ENV = "JPEFT_COMPILATION_CACHE"
_DEFAULT_COMPILATION_CACHE = os.path.join("~", ".cache", "jpeft", "xla")
# JAX's monitoring events: every program JAX asks XLA for (compiled or loaded), and those loaded from disk.
_PROGRAM_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def default_compilation_cache() -> str:
  """$JPEFT_COMPILATION_CACHE if set (may be '': off), else ~/.cache/jpeft/xla (unexpanded)."""
  return os.environ.get(COMPILATION_CACHE_ENV, _DEFAULT_COMPILATION_CACHE)


def define_compilation_cache_flag() -> flags.FlagHolder:
  """--compilation_cache=<dir>: the persistent XLA compilation cache of the program that defines it."""
  return flags.DEFINE_string(
      "compilation_cache", default_compilation_cache(), "Directory where compiled XLA programs are saved and loaded from, so a "
      "second run with the same shapes compiles nothing; '' turns the cache off. Default: "
      f"${COMPILATION_CACHE_ENV} if set, else {_DEFAULT_COMPILATION_CACHE}.")


class CompileCount:
  """How many XLA programs this process compiled and how many it loaded from the persistent cache."""

  def __init__(self, cache_dir: str):
    self.cache_dir = cache_dir
    self.programs = 0
    self.loaded = 0
    self.seconds = 0.0  # compiling or loading programs

  def on_duration(self, event: str, duration_secs: float, **kwargs) -> None:
    del kwargs
    if event == _PROGRAM_EVENT:
      self.programs += 1
      self.seconds += duration_secs

  def on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == _CACHE_HIT_EVENT:
      self.loaded += 1

  @property
  def compiled(self) -> int:
    return self.programs - self.loaded

  def summary(self) -> str:
    """One line for the log, e.g. 'compilation: 0 programs compiled, 5 loaded from the cache (<dir>), 0.3 s'."""
    where = f"from the cache ({self.cache_dir})" if self.cache_dir else "(cache off)"
    plural = "" if self.compiled == 1 else "s"
    return (f"compilation: {self.compiled} program{plural} compiled, {self.loaded} loaded {where}, "
            f"{self.seconds:.1f} s")


@contextlib.contextmanager
def compilation_cache(cache_dir: str) -> Iterator[CompileCount]:
  """Within the block, JAX saves every compiled program under `cache_dir` and loads it from there when the
  same program (same computation, shapes, shardings, devices, JAX and XLA versions) is asked for again; ''
  turns the cache off. Yields the block's count of compiled and loaded programs.

  Every program is cached, however small or fast to compile (JAX's defaults skip those under 1 s): a run's
  many small programs (initialisation, random keys, conversions) add up. The cache is trusted: do not point it
  at a directory others can write to.
  """
  cache_dir = os.path.expanduser(cache_dir)
  count = CompileCount(cache_dir)
  settings = {"jax_compilation_cache_dir": cache_dir or None, "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": -1}
  previous = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  jax_compilation_cache.reset_cache()  # JAX opens the cache directory once per process; this one is the block's
  jax.monitoring.register_event_duration_secs_listener(count.on_duration)
  jax.monitoring.register_event_listener(count.on_event)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(count.on_duration)
    jax.monitoring.unregister_event_listener(count.on_event)
    for name, value in previous.items():
      jax.config.update(name, value)
    jax_compilation_cache.reset_cache()
