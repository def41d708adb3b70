"""Where a tool may write a file it was asked for (`--out`), and writing it so that nothing is lost.

Two rules guard an output path (`check_file`, `check_dir`; every exporter calls one before reading anything):
  - an existing file or non-empty directory is replaced only when the caller says so (`overwrite`, the CLIs'
    --overwrite);
  - nothing a run recorded in its workdir is ever replaced, with or without `overwrite`: result.json, metrics,
    predictions, init_head.npz, checkpoints/, tb/, a sweep's trials.jsonl and sweep_config.json, and any other
    existing file in a workdir except an earlier export (a safetensors file with jpeft's run metadata).
    New files elsewhere in a workdir (its default `export/` folder, `<workdir>/model.safetensors`) are fine.
A workdir is any folder above the path that holds one of `WORKDIR_MARKERS`.

`atomic_path` / `atomic_file` write through a temporary file beside the target, renamed over it only once
complete (a kill leaves the old file or the new one, never half of one), with the permissions of any new file
(0o666 less the umask, usually 0644; `tempfile` and safetensors' `save_file` would give 0600). Without
`overwrite` the rename cannot replace a file that appeared after the check.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import secrets
import stat
from typing import IO, Iterator, Sequence

from jpeft.train.errors import RunError

# Files or folders that make a folder a run's or a sweep's workdir (trainer, writers, workdir_lock, sweep).
WORKDIR_MARKERS = ("checkpoints", "result.json", "metrics.jsonl", ".jpeft.lock", "trials.jsonl",
                   "sweep_config.json")
# Names (shell patterns) of what runs, sweeps and the analyses write at a workdir's top level: never an output,
# whether it exists yet or not (a result.json written into an unfinished run would make it look finished).
WORKDIR_RECORDS = WORKDIR_MARKERS + (
    "checkpoints_damaged", "tb", "merged", "predictions", "wise", "init_head.npz", "*logits_*.npy",
    "*labels_*.npy", "eval_*.json", "summary.jsonl", "summary.csv")
# The safetensors metadata key `jpeft.export` writes: a file with it is an export, which --overwrite may replace.
EXPORT_METADATA_KEY = "jpeft_run"


class OutputError(RunError, ValueError):
  """An output path that would replace a file without permission, or a run's own record."""


def _workdirs_above(path: str) -> list[str]:
  """The workdirs (folders holding a `WORKDIR_MARKERS` entry) that `path` lies in, nearest first."""
  found, folder = [], os.path.dirname(path)
  while True:
    if any(os.path.lexists(os.path.join(folder, m)) for m in WORKDIR_MARKERS):
      found.append(folder)
    parent = os.path.dirname(folder)
    if parent == folder:
      return found
    folder = parent


def _is_export(path: str) -> bool:
  """Whether `path` is a safetensors file written by `jpeft.export` (its header names the run)."""
  from safetensors import SafetensorError, safe_open  # pylint: disable=import-outside-toplevel
  try:
    with safe_open(path, framework="np") as f:
      return EXPORT_METADATA_KEY in (f.metadata() or {})
  except (SafetensorError, OSError, ValueError):
    return False


def _refuse_records(real: str, given: str, what: str, extra: Sequence[str]) -> None:
  """OutputError if `real` (resolved) is, or lies in, a record of a workdir above it or in `extra`."""
  for workdir in dict.fromkeys([*_workdirs_above(real), *(os.path.realpath(w) for w in extra)]):
    relative = os.path.relpath(real, workdir)
    if relative.startswith(os.pardir):  # not inside this one (a workdir passed in `extra`)
      continue
    if relative == os.curdir:
      raise OutputError(f"{what}='{given}' is the workdir of a run; an export never writes over a run's "
                        f"records. Choose a new folder, e.g. {what}={os.path.join(given, 'export', '')}")
    top = relative.split(os.sep)[0]
    if any(fnmatch.fnmatchcase(top, pattern) for pattern in WORKDIR_RECORDS):
      raise OutputError(f"{what}='{given}' is where the run in '{workdir}' keeps its records ({top}); an export "
                        f"never writes there, even with --overwrite. Choose another path, e.g. "
                        f"{what}={os.path.join(workdir, 'export', '')}")
    if os.path.lexists(real) and not (os.path.isfile(real) and _is_export(real)) and not os.path.isdir(real):
      raise OutputError(f"{what}='{given}' is a file the run in '{workdir}' holds, not an earlier export; an "
                        "export never replaces it, even with --overwrite. Choose another path, e.g. "
                        f"{what}={os.path.join(workdir, 'export', '')}")


def check_file(path: str, overwrite: bool = False, what: str = "--out", workdirs: Sequence[str] = ()) -> str:
  """Checks that a file may be written at `path`, and returns it.

  Args:
    path: the file to write.
    overwrite: an existing file (other than a workdir's record) may be replaced.
    what: the setting the path came from, for messages.
    workdirs: workdirs to protect besides those found above `path` (e.g. the run being exported).
  Raises:
    OutputError: `path` is a directory, a run's record, or an existing file without `overwrite`.
  """
  real = os.path.realpath(path)
  if os.path.isdir(real):
    raise OutputError(f"{what}='{path}' is a directory where a file was expected; name a file, or end the "
                      f"path with '{os.sep}' to write into the directory.")
  _refuse_records(real, path, what, workdirs)
  if os.path.lexists(path) and not overwrite:
    raise OutputError(f"{what}='{path}' exists; pass --overwrite (Python: overwrite=True) to replace it, or "
                      "choose another path.")
  return path


def check_dir(path: str, overwrite: bool = False, what: str = "--out", workdirs: Sequence[str] = ()) -> str:
  """Checks that a directory of outputs may be written at `path` (created later by the writer), and returns it.

  A directory that exists and is not empty needs `overwrite`; its files are then replaced one by one, each
  checked with `check_file`. Never a workdir, or a folder inside a workdir's records.
  Raises:
    OutputError: as `check_file`, or `path` is an existing file.
  """
  real = os.path.realpath(path)
  if any(os.path.lexists(os.path.join(real, m)) for m in WORKDIR_MARKERS):
    raise OutputError(f"{what}='{path}' is the workdir of a run; an export never writes over a run's records. "
                      f"Choose a new folder, e.g. {what}={os.path.join(path, 'export', '')}")
  _refuse_records(real, path, what, workdirs)
  if os.path.lexists(real) and not os.path.isdir(real):
    raise OutputError(f"{what}='{path}' is an existing file where a directory was expected; choose another path.")
  if os.path.isdir(real) and os.listdir(real) and not overwrite:
    raise OutputError(f"{what}='{path}' is a directory that is not empty; pass --overwrite (Python: "
                      "overwrite=True) to replace the files in it, or choose another path.")
  return path


@contextlib.contextmanager
def atomic_path(path: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary file name beside `path` for a writer that takes a name (safetensors' `save_file`,
  `np.save`); once the block ends cleanly the file gets the permissions of a new file (0o666 less the umask,
  whatever the writer gave it), is fsynced, and becomes `path`. Without `overwrite` that last step fails with
  FileExistsError if `path` exists by then. On any error the temporary file is removed, `path` untouched."""
  directory, name = os.path.split(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
  mode = stat.S_IMODE(os.fstat(fd).st_mode)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, mode)  # writers that replace the file (safetensors) make it 0600
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    if overwrite:
      os.replace(tmp, path)
    else:
      _link_no_clobber(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", overwrite: bool = False) -> Iterator[IO]:
  """`atomic_path` as an open file: what is written to it becomes `path` once the block ends cleanly."""
  with atomic_path(path, overwrite) as tmp, open(tmp, mode) as f:
    yield f


def _link_no_clobber(tmp: str, path: str) -> None:
  """Gives `tmp` the name `path` unless that exists: a hard link fails on an existing name where a rename
  replaces it (`tmp` itself is removed by the caller). On a filesystem without hard links, a rename after a
  last check."""
  try:
    os.link(tmp, path)
  except FileExistsError:
    raise
  except OSError:
    if os.path.lexists(path):
      raise FileExistsError(f"'{path}' exists") from None
    os.replace(tmp, path)
