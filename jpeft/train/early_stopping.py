"""Early stopping on a held-out split, keeping the best parameters (`config.early_stopping`).

The trainer evaluates the watched split every `eval_every_epochs`; `EarlyStopping.observe` records each
evaluation, keeps a device copy of the parameters whenever the metric improves (strictly: ties do not count as
improvement), and says to stop once `patience` evaluations in a row brought none. The run then evaluates its eval
split and `shift_tasks` with the best parameters, not the last ones (the study's CLIP / ImageNet protocol:
patience 10 on ImageNet val, one evaluation per epoch).

The bookkeeping travels in each checkpoint's meta (`to_meta` / `from_meta`) and the best parameters as the
checkpoint's 'best' item (`jpeft.train.checkpointing`), so a killed run resumes with the best it had at its
last checkpoint, and every checkpoint, the newest included, holds the run's best model whatever max_to_keep
removes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax

METRICS = {"accuracy": 1.0, "loss": -1.0}  # metric -> sign: larger sign * value is better
REASON_PATIENCE = "patience"  # stopped: `patience` evaluations without improvement
REASON_EPOCHS = "epochs"  # trained all optim.epochs


@dataclasses.dataclass
class EarlyStopping:
  """The state of early stopping in one run.

  Attributes:
    patience: evaluations without improvement after which training stops.
    metric: 'accuracy' (higher is better) or 'loss' (lower is better) of the watched split.
    split: name of the watched split (for results).
    best: {'epoch', 'step', 'value'} of the best evaluation so far, or None before the first.
    bad_evals: evaluations since the best one.
    stopped_epoch: the epoch training stopped after, or None while it runs.
    reason: REASON_PATIENCE or REASON_EPOCHS once stopped.
    params: device copy of the best trainable parameters (not in the meta; saved as the checkpoint's 'best').
  """
  patience: int
  metric: str
  split: str
  best: Optional[dict] = None
  bad_evals: int = 0
  stopped_epoch: Optional[int] = None
  reason: Optional[str] = None
  params: Any = None

  @classmethod
  def from_config(cls, config, split: str) -> Optional["EarlyStopping"]:
    """None when `config.early_stopping.patience` is 0 (off)."""
    es = config.early_stopping
    return cls(es.patience, es.metric, split) if es.patience else None

  @property
  def stopped(self) -> bool:
    return self.stopped_epoch is not None

  def observe(self, epoch: int, step: int, evaluation: dict, trainable) -> bool:
    """Records the evaluation after `epoch` (step `step`); True when it is the new best, whose parameters
    `trainable` are then copied (the train step donates its inputs, so the arrays themselves do not last)."""
    value = float(evaluation[self.metric])
    sign = METRICS[self.metric]
    if self.best is None or sign * value > sign * self.best["value"]:
      self.best = dict(epoch=epoch, step=step, value=value)
      self.bad_evals = 0
      self.params = jax.tree.map(lambda x: x.copy(), trainable)
      return True
    self.bad_evals += 1
    if self.bad_evals >= self.patience:
      self.stopped_epoch, self.reason = epoch, REASON_PATIENCE
    return False

  def finish(self, epoch: int) -> None:
    """Marks the end of training after `epoch` (all epochs done) unless patience stopped it before."""
    if not self.stopped:
      self.stopped_epoch, self.reason = epoch, REASON_EPOCHS

  def to_meta(self) -> dict:
    """JSON-able bookkeeping for a checkpoint's meta (everything but the parameters)."""
    return dict(patience=self.patience, metric=self.metric, split=self.split, best=self.best,
                bad_evals=self.bad_evals, stopped_epoch=self.stopped_epoch, reason=self.reason)

  def restore(self, meta: dict, params) -> None:
    """Takes the bookkeeping a checkpoint's meta recorded (`to_meta`) and its best parameters."""
    self.best, self.bad_evals = meta["best"], meta["bad_evals"]
    self.stopped_epoch, self.reason = meta["stopped_epoch"], meta["reason"]
    self.params = params

  def record(self) -> dict:
    """result.json's 'early_stopping': the watched split and metric, the best evaluation's epoch, step and
    value, the epoch training stopped after and why ('patience' or 'epochs')."""
    best = self.best or {}
    return dict(split=self.split, metric=self.metric, patience=self.patience, best_epoch=best.get("epoch"),
                best_step=best.get("step"), best_value=best.get("value"), stopped_epoch=self.stopped_epoch,
                reason=self.reason)
