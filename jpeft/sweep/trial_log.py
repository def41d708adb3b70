"""A sweep's record on disk: its finished trials (trials.jsonl) and the config they were made under.

A trial's key holds only what the grid sets (task, method, lr, wd, method grid values, seed); the rest of its
training comes from the sweep's base config: epochs, batch size, schedule, backbone, image size, ... So that
a rerun under another base config never reports the old trials as its own, the record is checked twice:

  <workdir>/sweep_config.json  the base config's run-defining values (`sweep_defining_values`) and their hash,
                               written at the first run; a rerun whose values differ is refused with the
                               fields and both values named (the readable check).
  each row of trials.jsonl     carries the hash of those values as 'sweep_config', restricted to the
                               hyperparameters of the row's own method(s) (`method_hash`); a row under another
                               hash is refused with its line number (the check that holds row by row: rows
                               cannot be edited unnoticed, and sweep_config.json deleted or edited by hand
                               changes nothing). Registering a new method changes no existing row's hash.

The backbone is named by its path in those values, so `sweep_config.json` also records the SHA-256 of the
pretrained file (`pretrained_sha256`) when `pretrained.path` or `.name` is a local file: a rerun after that file
changed (another jpeft release's mini backbone, a re-exported checkpoint) is refused rather than mixing trials of
two backbones under one path. Named checkpoints that jpeft downloads are not hashed: each name is one file.

Only the hash goes into the rows, not the values: a row stays short, and a mismatch is explained by
sweep_config.json, which holds the values. Widening a sweep (more tasks, methods or grid values) keeps the base
config, so it resumes; a sweep under another base config needs its own workdir (as the mini study's
random-init rows have in `<workdir>/random_init`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, Callable, Optional, Sequence

from jpeft import peft, workdir_lock
from jpeft.sweep import grid as grid_lib
from jpeft.train import model_setup, results, run_config
from jpeft.train import errors
from jpeft.train.errors import ConfigError, RunError

TRIALS_FILE = "trials.jsonl"
SWEEP_CONFIG_FILE = "sweep_config.json"
HASH_FIELD = "sweep_config"  # the row field holding the sweep config's hash
# What a failed write (a full disk) leaves, for its one-line error.
SWEEP_KEPT = (f"The trials recorded in {TRIALS_FILE} before it are kept; {errors.RESUME_AFTER_FREEING}: it trains "
              "only the trials without a row.")
PRETRAINED_DIGEST_FIELD = model_setup.PRETRAINED_DIGEST  # in sweep_config.json: the backbone file's SHA-256

# The base config's fields that every trial's result depends on: `run_config.RUN_DEFINING` without what each
# trial sets (task, mode, method, optim.lr, optim.wd; peft is added by `sweep_defining_values` without the
# grid's fields), with eval_every_epochs added, since a row's best-epoch accuracy comes from its evaluations.
# 'seed' is the sweep's own (not a trial's): it initialises the backbone when there is no pretrained one.
SWEEP_DEFINING = ("seed", "merge_factor", "model", "pretrained", "optim", "data.image_size",
                  "data.normalization", "data.augment", "data.augment_final_only", "data.center_crop",
                  "data.subset", "data.subset_index_file", "eval_every_epochs")
PER_TRIAL = ("optim.lr", "optim.wd")
_ADDED_DEFINING = ("data.eval_resize", "data.randaugment", "data.color_jitter", "data.random_erasing",
                   "early_stopping.patience", "early_stopping.metric", "early_stopping.split")

_FULL_SCHEDULE = {"grid.schedule": "full"}  # what a workdir recorded without schedule fields was made under

_ADDED_INSIDE = ("optim.lr_mult.peft_b", "peft.lora.scaling", "peft.lora.alpha", "peft.lora.init", "peft.adapter.init",
                 "peft.adapter.nonlinearity", "peft.adapter.drop_path")


class TrialLogError(RunError):
  """trials.jsonl holds a line this sweep cannot use; the message names the line and what to do."""


def sweep_defining_values(config) -> dict[str, Any]:
  """{dotted field: JSON value} of the base config that every trial's training depends on.

  peft holds every registered method's hyperparameters as its trials build them (the method's defaults under
  config.peft's values) without the fields of the method's grid, which each trial sets. So starting a sweep from
  configs/vtab_lora.py and resuming it from configs/vtab_ssf.py is the same sweep, while another LoRA dropout
  is not.
  """
  # model.remat and model.attention compute the same math (and sweeps recorded before they existed keep their
  # hash without them).
  values = run_config.defining_values(json.loads(config.to_json()), SWEEP_DEFINING,
                                      exclude=PER_TRIAL + ("model.remat", "model.attention"))
  if config.head_init != "random":  # a random head keeps the hash of sweeps recorded before head_init existed
    values["head_init"] = config.head_init
  if config.head_init == "zeroshot":  # the zero-shot head's source, classes and templates define every trial's start
    values.update(run_config.defining_values(json.loads(config.to_json()), ("zeroshot",)))
  # Fields added later count when not at their default, so sweeps recorded before them keep their hash.
  current = run_config.defining_values(json.loads(config.to_json()), _ADDED_DEFINING)
  values.update({k: v for k, v in current.items() if v != run_config.ADDED_FIELDS[k]})
  built = {}
  for name, cls in sorted(peft.registry().items()):
    given = config.peft[name].to_dict() if name in config.peft else {}
    built[name] = {k: v for k, v in {**peft.default_hparams(name), **given}.items() if k not in cls.grid}
  values.update(run_config.leaves(json.loads(json.dumps(built)), "peft"))  # tuples as JSON lists, as recorded
  # Fields added inside recorded blocks (optim, peft.<method>) count only when not at their default, so sweeps
  # recorded before them keep their hash.
  return {k: v for k, v in values.items() if not (k in _ADDED_INSIDE and v == run_config.ADDED_FIELDS[k])}


def config_hash(values: dict[str, Any]) -> str:
  """A short stable hash of `sweep_defining_values` (12 hex digits of SHA-256 over canonical JSON)."""
  return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _peft_method(name: str) -> Optional[str]:
  """'peft.lora.dropout' -> 'lora'; None for a field outside peft."""
  parts = name.split(".")
  return parts[1] if parts[0] == "peft" and len(parts) > 2 else None


def method_hash(values: dict[str, Any], method: str) -> str:
  """The config hash of a trial of `method` ('lora', 'lora+bitfit'): the base fields and the hyperparameters of
  its own methods only, so that registering another method (or changing another method's defaults) leaves the
  rows of this one valid."""
  own = set(method.split("+"))
  return config_hash({k: v for k, v in values.items() if _peft_method(k) in (None, *own)})


def _config_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
  """`run_config.differences`, but a method whose hyperparameters only one side has (registered since, or no
  longer) is no difference: no recorded trial of it exists, or none will be run."""
  both = {_peft_method(k) for k in recorded} & {_peft_method(k) for k in current}
  # A workdir without schedule fields was made under the full protocol.
  if any(k.startswith("grid.") for k in [*recorded, *current]):
    recorded, current = {**_FULL_SCHEDULE, **recorded}, {**_FULL_SCHEDULE, **current}
  return [d for d in run_config.differences(recorded, current) if _peft_method(d[0]) in both]


def _shorten(text: str, limit: int = 80) -> str:
  return repr(text if len(text) <= limit else text[:limit] + "...")


class TrialLog:
  """Append-only JSON-lines record of finished trials, keyed by (stage, trial key), of one sweep config.

  Args:
    path: the trials.jsonl file (need not exist).
    row_hash: row -> the hash it must carry (`method_hash` of the sweep's values and the row's method); every row
      read must carry it, every row appended gets it.
  Raises:
    TrialLogError: a line that is not a trial record, or a row made under another (or no recorded) sweep
      config. The file is left as it was.
  """

  def __init__(self, path: str, row_hash: Callable[[dict], str], write: bool = True,
               lock_path: Optional[str] = None):
    self.path = path
    self.row_hash = row_hash
    self.write = write
    self.lock_path = lock_path
    self.rows: dict[tuple[str, str], dict] = {}
    self._offset = 0  # bytes of the file read so far (complete lines only)
    self._lines = 0
    self.refresh()

  def refresh(self) -> None:
    """Reads the rows appended since the last read (by this or another process sharing the workdir). A torn
    last line (a writer killed in the middle of it, or one still writing) is left for later."""
    if not os.path.exists(self.path):
      return
    with open(self.path, "rb") as f:
      f.seek(self._offset)
      data = f.read()
    complete = data[:data.rfind(b"\n") + 1]
    foreign = []
    for number, line in enumerate(complete.decode("utf-8", errors="replace").split("\n")[:-1],
                                  start=self._lines + 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        stage, key = row["stage"], row["key"]
      except (ValueError, TypeError, KeyError) as e:
        raise TrialLogError(
            f"Line {number} of '{self.path}' is not a trial record ({type(e).__name__}: {e}): {_shorten(line)}. "
            "Delete that line and rerun: its trial is trained again, every other line is kept.") from None
      if row.get(HASH_FIELD) != self.row_hash(row):
        foreign.append((number, row.get(HASH_FIELD), self.row_hash(row)))
      self.rows[(stage, key)] = row
    if foreign:
      (number, other, expected), more = foreign[0], len(foreign) - 1
      made = (f"under another sweep config (hash {other})" if other else
              "without a recorded sweep config (written before sweeps recorded theirs)")
      raise TrialLogError(
          f"Line {number} of '{self.path}'{f' and {more} more' if more else ''} was made {made}, but this sweep's "
          f"config hashes to {expected} for that trial (see {SWEEP_CONFIG_FILE} beside it), so those trials cannot be "
          "reported as this sweep's. Rerun with the config they were made under, or pass a new --workdir for "
          "this config.")
    self._offset += len(complete)
    self._lines += complete.count(b"\n")

  def has(self, stage: str, trial: grid_lib.Trial) -> bool:
    return (stage, trial.key) in self.rows

  def get(self, stage: str, trial: grid_lib.Trial) -> dict:
    return self.rows[(stage, trial.key)]

  def append(self, rows: Sequence[dict]) -> None:
    """Appends `rows` (stamped with the config hash), flushed and fsynced, so a kill loses at most this chunk.

    With a `lock_path` the append holds that lock, so processes sharing the workdir append whole lines one at a
    time (also on NFS, whose appends are not atomic across hosts); a torn last line found then was left by a
    killed writer and is dropped first (its trials are trained again)."""
    rows = [dict(row, **{HASH_FIELD: self.row_hash(row)}) for row in rows]
    if self.write:
      # A write cut short (a full disk) leaves a torn last line, which the next append (or run) drops.
      with (workdir_lock.locked(self.lock_path) if self.lock_path else contextlib.nullcontext()):
        with errors.writing(self.path, SWEEP_KEPT), open(self.path, "ab+") as f:
          f.seek(0, os.SEEK_END)
          size = f.tell()
          if size:
            f.seek(max(0, size - 65536))
            tail = f.read()
            if not tail.endswith(b"\n"):
              cut = tail.rfind(b"\n")
              if cut < 0 and size > len(tail):  # a torn line longer than the window: find its start
                f.seek(0)
                whole = f.read()
                f.truncate(whole.rfind(b"\n") + 1)
              else:
                f.truncate(size - len(tail) + cut + 1)
          f.write("".join(json.dumps(row) + "\n" for row in rows).encode())
          f.flush()
          os.fsync(f.fileno())
    for row in rows:
      self.rows[(row["stage"], row["key"])] = row


def _has_rows(path: str) -> bool:
  """Whether the trials file at `path` records any trial."""
  if not os.path.exists(path):
    return False
  with open(path, "rb") as f:
    return any(line.strip() for line in f)


def open_log(config, workdir: str, write: bool = True, replace_unused: bool = False,
             lock_path: Optional[str] = None, schedule: Optional[dict] = None) -> TrialLog:
  """The workdir's TrialLog for a sweep under base `config`; records the config at the first run.

  `write` False (every process of a multi-process sweep but process 0) reads the workdir and keeps appended
  rows in memory only, so one process writes each file. `replace_unused`: a recorded config under which no
  trial finished (a sweep that failed before its first trial) is replaced by this one instead of refused; the
  caller sets it only when no other process runs on the workdir. `lock_path`: see `TrialLog.append`.
  `schedule`: the grid's schedule fields (`halving.defining_values`; empty for the full protocol), recorded and
  hashed with the config, so trials of one schedule are never reported as another's.

  Raises:
    ConfigError: sweep_config.json records other run-defining values (all differing fields are named), or
      another SHA-256 of the pretrained file.
    TrialLogError: see `TrialLog`.
  """
  values = {**sweep_defining_values(config), **(schedule or {})}
  digest = model_setup.pretrained_digest(config)
  path = os.path.join(workdir, SWEEP_CONFIG_FILE)
  trials_path = os.path.join(workdir, TRIALS_FILE)
  record, recorded = None, None
  if os.path.exists(path) and not (replace_unused and write and not _has_rows(trials_path)):
    try:
      with open(path) as f:
        record = json.load(f)
      recorded = dict(record["values"])
    except (ValueError, TypeError, KeyError) as e:
      raise ConfigError(f"'{path}' is unreadable ({type(e).__name__}: {e}). Delete it and rerun: it is written "
                        "again from this config, and each trial row's config hash still keeps rows of another "
                        "config out.") from None
    mismatches = _config_differences(recorded, values)
    if mismatches:
      listed = "; ".join(f"{name} = {old!r} there, {new!r} here" for name, old, new in mismatches)
      raise ConfigError(
          f"The sweep workdir '{workdir}' holds trials made under another config ({path}): {listed}. Its "
          "finished trials would be reported as this config's. Rerun with the values recorded there, or pass a "
          "new --workdir for a sweep with this config.")
    made_from = record.get(PRETRAINED_DIGEST_FIELD)
    if made_from and digest and made_from != digest:
      raise ConfigError(
          f"The sweep workdir '{workdir}' holds trials made from the pretrained checkpoint "
          f"'{model_setup.pretrained_name(config)}' when its SHA-256 was {made_from[:16]}..., but the "
          f"file there now hashes to {digest[:16]}... ({path}): it has changed since (a new jpeft's mini backbone, "
          "a re-exported checkpoint), so its finished trials would be reported as this backbone's. Pass a new "
          "--workdir for this backbone, or put back the file the trials were made from.")
  log = TrialLog(trials_path, lambda row: method_hash(values, row["method"]), write, lock_path)
  if write and recorded is None:
    results.write_json(path, dict(hash=config_hash(values), values=values, **{PRETRAINED_DIGEST_FIELD: digest}))
  elif write and digest and not record.get(PRETRAINED_DIGEST_FIELD):
    # A sweep recorded before digests were: what its trials used is unknowable, so warn when the file is newer
    # than the record, and guard its reruns from now on.
    model_setup.warn_if_modified_after(config, path, f"the sweep in '{workdir}' was recorded")
    results.write_json(path, dict(record, **{PRETRAINED_DIGEST_FIELD: digest}))
  return log
