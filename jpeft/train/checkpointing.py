"""Orbax checkpoints of a run: only what was trained, plus a pointer to the pretrained backbone.

Layout: `<workdir>/checkpoints/<step>/{state,meta}`. `state` holds the trainable flat params, the optimizer
state (Adam count, mu, nu), the step and the run's base PRNG key; `meta` (JSON) holds the epoch, the eval
history, and the pretrained name / path, method and model variant needed to rebuild the frozen part. A LoRA
run on ViT-B/16 therefore stores ~2 MB instead of 330 MB.

A checkpoint that does not read back whole (a truncated data file, an empty manifest, missing metadata: a disk
that filled up or a copy cut short) is skipped with a warning for the newest one that does; see
`Checkpointer.restore_newest_intact`. Orbax writes each step into `<step>.orbax-checkpoint-tmp` and renames it
when complete, so a process killed mid-write leaves no step that looks complete, only the tmp directory, which
the next save of that step replaces.

A run with early stopping (`jpeft.train.early_stopping`) also saves its best parameters so far as a third item,
`best` ({path: array}, laid out as `state`'s trainable), in every checkpoint. `restore` then returns them as the
state's 'trainable' (the model the run reports: what mode 'eval', WiSE-FT, `init_from` and export read) and the
last parameters as 'last_trainable', which only resuming needs.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

import jax
import optax
import orbax.checkpoint as ocp
from absl import logging

from jpeft import interrupts
from jpeft.train.errors import RESUME_AFTER_FREEING, RunError

# How a failed write surfaces: OSError from Python's file calls, ValueError from tensorstore (whose status, e.g.
# 'RESOURCE_EXHAUSTED: ... No space left on device', orbax raises from its writer threads at the next wait).
_WRITE_ERRORS = (OSError, ValueError)


class CheckpointWriteError(RunError, OSError):
  """A checkpoint could not be written (full disk, lost permissions); earlier checkpoints are intact."""


class DamagedCheckpointError(RunError):
  """Checkpoints exist but none of them reads back whole."""


class Checkpointer:
  """Saves and restores run states in `directory` with an `ocp.CheckpointManager`.

  Args:
    directory: absolute or relative path; created if missing.
    max_to_keep: newest checkpoints kept on disk.
    create: create `directory` if missing (False for readers, which must leave no trace).
  """

  def __init__(self, directory: str, max_to_keep: int = 2, create: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create),
        item_names=("state", "meta", "best"))
    self._pending: Optional[int] = None  # the step of a save not yet known to be on disk

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: dict[str, Any], meta: dict[str, Any], best: Optional[dict] = None) -> None:
    """state: {'trainable': {path: array}, 'opt_state': ScaleByAdamState, 'step': int, 'rng': key data};
    best: the best trainable parameters of a run with early stopping (meta['early_stopping'] describes them).

    The write is asynchronous; `wait` (or the next save) reports a failed write as CheckpointWriteError.
    """
    self.wait()  # the previous save's failure is that step's, not this one's
    state = dict(state, opt_state=state["opt_state"]._asdict())
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if best is not None:
      items["best"] = ocp.args.StandardSave(best)
    self._pending = step
    try:
      self._manager.save(step, args=ocp.args.Composite(**items))
    except _WRITE_ERRORS as e:
      raise CheckpointWriteError(self._write_message(step, e)) from e

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON metadata of the checkpoint at `step`, without reading any array."""
    return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

  def restore(self, step: int, like: Optional[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores (state, meta) at `step`; `like` is a state of the same structure (arrays or shape structs),
    whose shardings the restored arrays take, or None to read the state as saved (one-device arrays; how
    `config.init_from` and `jpeft.export` read another run, whose shapes they check afterwards). A checkpoint
    with best parameters (early stopping) returns them as 'trainable' and the last ones as 'last_trainable'."""
    abstract = None
    if like is not None:
      like = dict(like, opt_state=like["opt_state"]._asdict())
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    meta = self.read_meta(step)  # read once: it says whether there is a 'best' item to restore
    items = dict(state=ocp.args.StandardRestore(abstract))
    if (meta.get("early_stopping") or {}).get("best"):
      items["best"] = ocp.args.StandardRestore(None if abstract is None else abstract["trainable"])
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    state = dict(restored.state)
    state["opt_state"] = optax.ScaleByAdamState(**state["opt_state"])
    if "best" in items:
      state["last_trainable"], state["trainable"] = state["trainable"], dict(restored.best)
    return state, meta

  def restore_newest_intact(self, like: Optional[dict[str, Any]], check_meta: Callable[[dict[str, Any]], None],
                            set_aside_damaged: bool) -> Optional[tuple[int, dict[str, Any], dict[str, Any]]]:
    """Restores the newest checkpoint that reads back whole, skipping damaged newer ones with a warning.

    Args:
      like: as for `restore`.
      check_meta: called with a checkpoint's meta before its arrays are read; its errors (e.g. the config of
        another run) propagate and are not taken for damage.
      set_aside_damaged: move each damaged newer step to `<directory>_damaged/<step>` (kept for inspection,
        never deleted), so that the resumed run can write that step again. Readers (mode 'eval') pass False.
    Returns:
      (step, state, meta), or None if the directory holds no checkpoint.
    Raises:
      DamagedCheckpointError: there are checkpoints, but none reads back whole.
    """
    damaged = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = self.read_meta(step)
      except Exception as e:  # noqa: BLE001 - whatever orbax or tensorstore raise, the step does not read back
        damaged.append((step, e))
        continue
      check_meta(meta)
      try:
        state, meta = self.restore(step, like)
      except Exception as e:  # noqa: BLE001 - as above
        damaged.append((step, e))
        continue
      for bad_step, error in damaged:
        moved = self._set_aside(bad_step) if set_aside_damaged else None
        logging.warning("The checkpoint of step %d in %s is damaged (%s); %s. Using the newest intact "
                        "checkpoint, step %d.", bad_step, self.directory, _first_line(error),
                        f"moved it to {moved}" if moved else "left it in place", step)
      return step, state, meta
    if damaged:
      raise DamagedCheckpointError(
          f"No checkpoint in {self.directory} reads back whole: "
          + "; ".join(f"step {step}: {_first_line(error)}" for step, error in damaged)
          + ". They were left in place. Move the directory aside to start the run afresh, or restore it from a "
          "backup and run the same command again.")
    return None

  def _set_aside(self, step: int) -> str:
    """Moves step `step` out of the checkpoint directory (to a free name) and returns where it went."""
    target = os.path.join(self.directory + "_damaged", str(step))
    suffix = 1
    while os.path.exists(target):
      target, suffix = os.path.join(self.directory + "_damaged", f"{step}-{suffix}"), suffix + 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until the pending save is on disk; CheckpointWriteError if it failed."""
    try:
      self._manager.wait_until_finished()
    except _WRITE_ERRORS as e:
      raise CheckpointWriteError(self._write_message(self._pending, e)) from e
    finally:
      self._pending = None

  def close(self) -> None:
    """Waits for the pending save and releases orbax's threads. A failed save was reported by `wait` or
    `save`, or is being reported now by the error that ends the run: it is not raised again here."""
    try:
      self._manager.close()
    except _WRITE_ERRORS as e:
      logging.info("Closing the checkpoint manager of %s: %s", self.directory, _first_line(e))

  def _write_message(self, step, error) -> str:
    latest = interrupts.newest_checkpoint(self.directory)
    intact = (f"Earlier checkpoints are intact (newest: step {latest})" if latest is not None else
              "No earlier checkpoint was saved")
    return (f"Could not write the checkpoint{'' if step is None else f' of step {step}'} to {self.directory}: "
            f"{_first_line(error)}. {intact}; {RESUME_AFTER_FREEING} to resume from there.")


def _first_line(error: Exception) -> str:
  """Orbax errors can run to many lines, and tensorstore appends its specs ('[tensorstore_spec=...]', kilobytes
  of JSON) to the line that names the file and the problem: that line, without them."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0].split(' [tensorstore_spec')[0] if lines else ''}"
