"""Another run's trained state: read it back (`load_run`, also for `jpeft.export`), and start a run from it
(`config.init_from`, `start_from`).

`config.init_from.workdir` names a run whose newest intact checkpoint a new run (its own, new workdir) starts
from: its PEFT parameters, its head (`init_from.head`, kept when the class counts match) and optionally its
AdamW state (`init_from.optimizer`). This is not resuming: the new run has its own task, mode, recipe and
schedule, its own checkpoints and result.json (which records the source's path and step under `init_from`).
A resumed run with `init_from` continues from its own checkpoint and never reads the source again.

Only what fixes the trained parameters' meaning must match the source (`INIT_DEFINING`): the backbone, the
methods and their hyperparameters, the model and the input normalisation.

Every reader of another run (`init_from`, `jpeft.export`, `jpeft.wise`) goes through `load_run`, which refuses
an unfinished run (`Completion`: killed before its last step, or its newest checkpoint damaged) with
`UnfinishedRunError` unless the caller allows it; what the reader then used is `SavedRun.completion`, which each
of them records in its output.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from jpeft.peft import base
from jpeft.train import checkpointing, model_setup, run_config
from jpeft.train.errors import ConfigError

# How a user lets init_from start from an unfinished run.
ALLOW_FLAG = "--config.init_from.allow_unfinished=True"
# Fields of the source's config that must equal the new run's: they decide what the trained parameters mean.
INIT_DEFINING = ("method", "peft", "merge_factor", "model.variant", "model.style", "model.projection_dim",
                 "pretrained", "data.normalization")


class UnfinishedRunError(ConfigError):
  """The run's newest intact checkpoint is not the step it was meant to end at (the message names both)."""


@dataclasses.dataclass(frozen=True)
class Completion:
  """How far a run got, from its checkpoints.

  Attributes:
    step: the step of its newest intact checkpoint (the one readers use).
    planned_step: the step its config ends at (optim.epochs x its steps per epoch); None if it cannot be told.
    newest_step: the newest checkpoint on disk; above `step` when that one is damaged.
    early_stopped: early stopping ended the run (it is finished below `planned_step`).
  """
  step: int
  planned_step: Optional[int]
  newest_step: int
  early_stopped: bool = False

  @property
  def finished(self) -> bool:
    reached = self.planned_step is not None and self.step >= self.planned_step
    return self.newest_step == self.step and (reached or self.early_stopped)

  def record(self) -> dict:
    """{step, planned_step, finished}: what outputs made from the run record about it."""
    return dict(step=self.step, planned_step=self.planned_step, finished=self.finished)


def completion(step: int, meta: dict, newest_step: int) -> Completion:
  """The `Completion` of a run whose newest intact checkpoint is `step` with metadata `meta` (as
  `trainer._meta` writes it) and whose newest checkpoint on disk is `newest_step`."""
  planned = meta.get("total_steps")
  epochs = json.loads(meta["config"])["optim"]["epochs"]
  if planned is None and meta.get("epoch"):  # recorded before checkpoints held total_steps: all at epoch ends
    planned = step // meta["epoch"] * epochs
  stopped = (meta.get("early_stopping") or {}).get("stopped_epoch") is not None
  return Completion(step=int(step), planned_step=planned, newest_step=int(newest_step), early_stopped=stopped)


def check_finished(done: Completion, workdir: str, what: str, allow_flag: str, allow: bool) -> None:
  """Raises UnfinishedRunError for an unfinished run unless `allow`; with `allow` warns on stderr.

  what: the setting that named `workdir` ('--workdir'); allow_flag: how the user allows it ('--allow_unfinished')."""
  if done.finished:
    return
  planned = "an unknown step" if done.planned_step is None else f"step {done.planned_step}"
  if done.newest_step != done.step:
    why = (f"its newest checkpoint (step {done.newest_step}) is damaged; the newest intact one is step "
           f"{done.step}, and the run was meant to reach {planned}")
    fix = "Restore the damaged checkpoint, or run the run's training command again to redo it,"
  else:
    why = f"it is an unfinished run: its newest checkpoint is step {done.step}, and it was meant to reach {planned}"
    fix = "Run its training command again to finish it (it resumes),"
  if allow:
    print(f"warning: {what}='{workdir}': {why}; using step {done.step} ({allow_flag}).", file=sys.stderr)
    return
  raise UnfinishedRunError(f"{what}='{workdir}': {why}. {fix} or pass {allow_flag} to use step {done.step}.")


@dataclasses.dataclass(frozen=True)
class SavedRun:
  """The newest intact checkpoint of a run.

  Attributes:
    workdir: absolute path of the run's workdir.
    step: the checkpoint's training step.
    config: the run's config as recorded in the checkpoint.
    trainable: flat {path: host array} of the trained parameters (head included).
    opt_state: its `optax.ScaleByAdamState` (count [], mu / nu flat dicts like `trainable`).
    meta: the checkpoint's metadata (epoch, evals, ...).
    completion: how far the run got (`Completion`; finished unless the caller allowed otherwise).
  """
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  trainable: dict
  opt_state: Any
  meta: dict
  completion: Completion


def load_run(workdir: str, what: str = "--workdir", allow_unfinished: bool = False,
             allow_flag: str = "--allow_unfinished") -> SavedRun:
  """Reads the newest intact checkpoint of the finished run in `workdir` (creating nothing).

  Args:
    workdir: the run's workdir.
    what: the setting the path came from, for error messages ('--config.init_from.workdir').
    allow_unfinished: accept an unfinished run (killed before its last step, or its newest checkpoint damaged)
      and read its newest intact checkpoint, with a warning on stderr.
    allow_flag: how the user of the calling tool sets `allow_unfinished`, for the error message.
  Raises:
    ConfigError when `workdir` holds no checkpoint, UnfinishedRunError (a ConfigError) for an unfinished run,
    DamagedCheckpointError when no checkpoint reads back whole.
  """
  directory = os.path.join(workdir, "checkpoints")
  restored = None
  if os.path.isdir(directory):
    ckpt = checkpointing.Checkpointer(directory, create=False)
    try:
      restored = ckpt.restore_newest_intact(None, lambda meta: None, set_aside_damaged=False)
      newest = ckpt.latest_step()
    finally:
      ckpt.close()
  if restored is None:
    raise ConfigError(f"{what}='{workdir}' holds no checkpoint ('{directory}' "
                      f"{'has none' if os.path.isdir(directory) else 'does not exist'}). Pass the workdir of a "
                      "finished training run.")
  step, state, meta = restored
  done = completion(step, meta, max(newest, step))
  check_finished(done, workdir, what, allow_flag, allow_unfinished)
  to_host = lambda tree: jax.tree.map(np.asarray, jax.device_get(tree))
  return SavedRun(workdir=os.path.abspath(workdir), step=step,
                  config=ml_collections.ConfigDict(json.loads(meta["config"])),
                  trainable=to_host(state["trainable"]), opt_state=to_host(state["opt_state"]), meta=meta,
                  completion=done)


def check_compatible(config, source: SavedRun) -> None:
  """Raises one ConfigError naming every `INIT_DEFINING` field where `config` and the source run differ."""
  recorded = run_config.defining_values(json.loads(source.config.to_json()), INIT_DEFINING)
  current = run_config.defining_values(json.loads(config.to_json()), INIT_DEFINING)
  differ = run_config.differences(recorded, current)
  if differ:
    raise ConfigError(
        f"--config.init_from.workdir='{source.workdir}' is a run with "
        f"{', '.join(f'{name} = {old!r}' for name, old, _ in differ)}, but this config has "
        f"{', '.join(f'{name} = {new!r}' for name, _, new in differ)}. A run can start from another only with "
        f"the same backbone, methods and model ({', '.join(INIT_DEFINING)}); set these fields as the source run "
        "had them, or leave init_from.workdir empty to start from the pretrained backbone.")
  model_setup.check_pretrained(config, source.meta, source.workdir)


def take_params(source: SavedRun, fresh: dict, labels: dict, keep_head: bool) -> tuple[dict, bool]:
  """The source's trainable parameters on the new run's paths -> (flat params, head_kept).

  Args:
    fresh: the new run's freshly initialised trainable flat dict (shapes and the fresh head).
    labels: flat path -> group of the new run (`partition.label_params`).
    keep_head: take the source's head when its shapes fit (they do not when the class counts differ).
  Raises ConfigError when the paths or a non-head shape differ."""
  missing, extra = sorted(set(fresh) - set(source.trainable)), sorted(set(source.trainable) - set(fresh))
  shape_of = lambda tree, k: tuple(np.shape(tree[k]))
  misfit = [k for k in fresh if k in source.trainable and labels[k] != base.HEAD
            and shape_of(fresh, k) != shape_of(source.trainable, k)]
  if missing or extra or misfit:
    raise ConfigError(
        f"--config.init_from.workdir='{source.workdir}' holds trained parameters that do not fit this model: "
        + "; ".join(part for part in (
            f"missing {missing[:6]}" if missing else "", f"unexpected {extra[:6]}" if extra else "",
            ", ".join(f"{k} is {shape_of(source.trainable, k)} there but {shape_of(fresh, k)} here"
                      for k in misfit[:6])) if part)
        + ". It was trained with another jpeft version or model; start from the pretrained backbone instead "
        "(leave init_from.workdir empty).")
  head = [k for k in fresh if labels[k] == base.HEAD]
  head_kept = keep_head and all(shape_of(fresh, k) == shape_of(source.trainable, k) for k in head)
  if keep_head and not head_kept:
    logging.warning("init_from: the source's head (%s) does not fit this task's %s; this run trains a new head.",
                    {k: shape_of(source.trainable, k) for k in head}, {k: shape_of(fresh, k) for k in head})
  params = {k: fresh[k] if k in head and not head_kept else source.trainable[k] for k in fresh}
  return params, head_kept


def start_from(config, fresh: dict, labels: dict, tx) -> tuple[dict, Any, dict]:
  """The state a new run with `config.init_from` starts in.

  Returns (trainable flat dict, optimizer state, record): the optimizer state is the source's AdamW moments
  and count when `init_from.optimizer` (a new head's entries fresh), else `tx.init` of the parameters; the
  record (for result.json) is {workdir, step, planned_step, finished, task, head: 'source' | 'new',
  optimizer: bool}: `step` is the source's checkpoint taken, below `planned_step` (finished False) only with
  `init_from.allow_unfinished`.
  """
  source = load_run(config.init_from.workdir, "--config.init_from.workdir", config.init_from.allow_unfinished,
                    ALLOW_FLAG)
  check_compatible(config, source)
  params, head_kept = take_params(source, fresh, labels, config.init_from.head)
  opt_state = tx.init(params)
  if config.init_from.optimizer:
    # The count goes with the moments (Adam's bias correction divides by 1 - b^count), and the lr schedule
    # reads it too: this run's schedule continues from the source's step count.
    take = lambda new, old: {k: old[k] if head_kept or labels[k] != base.HEAD else new[k] for k in new}
    opt_state = optax.ScaleByAdamState(count=source.opt_state.count, mu=take(opt_state.mu, source.opt_state.mu),
                                       nu=take(opt_state.nu, source.opt_state.nu))
  record = dict(workdir=source.workdir, **source.completion.record(), task=source.config.task,
                head="source" if head_kept else "new", optimizer=bool(config.init_from.optimizer))
  return params, opt_state, record

