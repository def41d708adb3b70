"""Orbax checkpoints of a run: only what was trained, plus a pointer to the pretrained backbone.

Layout: `<workdir>/checkpoints/<step>/{state,meta}`. `state` holds the trainable flat params, the optimizer
state (Adam count, mu, nu), the step and the run's base PRNG key; `meta` (JSON) holds the epoch, the eval
history, and the pretrained name / path, method and model variant needed to rebuild the frozen part. A LoRA
run on ViT-B/16 therefore stores ~2 MB instead of 330 MB.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import optax
import orbax.checkpoint as ocp

from jpeft.train.errors import RunError


class CheckpointWriteError(RunError, OSError):
  """A checkpoint could not be written (full disk, lost permissions); earlier checkpoints are intact."""


class Checkpointer:
  """Saves and restores run states in `directory` with an `ocp.CheckpointManager`.

  Args:
    directory: absolute or relative path; created if missing.
    max_to_keep: newest checkpoints kept on disk.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "meta"))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """state: {'trainable': {path: array}, 'opt_state': ScaleByAdamState, 'step': int, 'rng': key data}.

    The write is asynchronous; `wait` (or the next save) reports a failed write as CheckpointWriteError.
    """
    state = dict(state, opt_state=state["opt_state"]._asdict())
    try:
      self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       meta=ocp.args.JsonSave(meta)))
    except OSError as e:
      raise CheckpointWriteError(self._write_message(step, e)) from e

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON metadata of the checkpoint at `step`, without reading any array."""
    return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

  def restore(self, step: int, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restores (state, meta) at `step`; `like` is a state of the same structure (arrays or shape structs),
    whose shardings the restored arrays take."""
    like = dict(like, opt_state=like["opt_state"]._asdict())
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                   meta=ocp.args.JsonRestore()))
    state = dict(restored.state)
    state["opt_state"] = optax.ScaleByAdamState(**state["opt_state"])
    return state, dict(restored.meta)

  def wait(self) -> None:
    """Blocks until the pending save is on disk."""
    try:
      self._manager.wait_until_finished()
    except OSError as e:
      raise CheckpointWriteError(self._write_message(None, e)) from e

  def close(self) -> None:
    self._manager.close()

  def _write_message(self, step, error) -> str:
    latest = self._manager.latest_step()
    return (f"Could not write the checkpoint{'' if step is None else f' of step {step}'} to {self.directory}: "
            f"{error}. The disk may be full or the directory not writable. Earlier checkpoints are intact "
            f"(latest complete step: {latest}); free space or fix permissions and run the same command again "
            "to resume from there.")
