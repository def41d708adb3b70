"""The study's optimizer and learning-rate schedule as pure functions of traced values.

AdamW is written as optax's `scale_by_adam` (the only state: count, mu, nu) followed by decoupled weight decay
and the scheduled step size computed inside the jitted step from the traced step count, the traced base
learning rate and the traced schedule length (warmup and total steps). So learning rate, weight decay and the
schedule are runtime arrays, not constants baked into a closure: a sweep can `jax.vmap` the train step over
them, and its tune (train800) and final (train800val200) stages, which differ only in their number of steps,
run one compiled program. The update equals `optax.adamw` / torch AdamW:
  p <- p - lr_t * mult * (adam(g) + wd * p)
where `mult` is the static per-group learning-rate multiplier (`config.optim.lr_mult`), applied by
`optax.multi_transform` over the trainable paths' group labels (`jpeft.peft.partition.make_optimizer`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from jpeft.peft import partition


GRANULARITIES = ("step", "epoch_lagged")


def schedule_steps(optim_config, steps_per_epoch: int) -> dict[str, int]:
  """{'warmup_steps', 'total_steps', 'steps_per_epoch'} of a run of `optim_config.epochs` epochs of
  `steps_per_epoch` steps (all three are traced, so runs of different lengths share one program)."""
  return dict(warmup_steps=optim_config.warmup_epochs * steps_per_epoch,
              total_steps=optim_config.epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Linear warmup from `warmup_start_lr`, then cosine down to `min_lr`, in optimizer steps.

  As timm's `CosineLRScheduler` (used by the study) with `warmup_prefix=False`: the cosine runs over the whole
  training, [0, total_steps], and warmup replaces its first `warmup_steps`.

  granularity (static):
    'step'          the value changes every optimizer step (a smooth version of the study's curve).
    'epoch_lagged'  the study's exact values: its timm scheduler is stepped once per epoch, after the epoch
                    (`scheduler.step(epoch)`), so epoch e trains with the epoch-(e - 1) value and epochs 0
                    and 1 both train at `warmup_start_lr`.
  """
  warmup_start_lr: float
  min_lr: float
  granularity: str = "step"

  def __post_init__(self):
    if self.granularity not in GRANULARITIES:
      raise ValueError(f"Unknown schedule granularity '{self.granularity}': expected one of {GRANULARITIES}.")

  def __call__(self, step, base_lr, warmup_steps, total_steps, steps_per_epoch):
    """All scalars, traced or not (base_lr f32; the steps int or float) -> f32 scalar learning rate.

    steps_per_epoch is read by 'epoch_lagged' only; warmup_steps and total_steps are whole epochs of it.
    """
    if self.granularity == "epoch_lagged":
      per_epoch = jnp.maximum(jnp.round(jnp.asarray(steps_per_epoch, jnp.float32)).astype(jnp.int32), 1)
      # Integer division: a float step / steps_per_epoch can round up to the next epoch on its last step.
      lagged_epoch = jnp.maximum(jnp.asarray(step, jnp.int32) // per_epoch - 1, 0)
      # At an epoch's first step the per-step curve is timm's per-epoch value (warmup and total are whole epochs).
      step = lagged_epoch * per_epoch
    step = jnp.asarray(step, jnp.float32)
    warmup_steps = jnp.asarray(warmup_steps, jnp.float32)
    total_steps = jnp.asarray(total_steps, jnp.float32)
    warm = self.warmup_start_lr + (base_lr - self.warmup_start_lr) * step / jnp.maximum(warmup_steps, 1.0)
    progress = jnp.clip(step / jnp.maximum(total_steps, 1.0), 0.0, 1.0)
    cosine = self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup_steps, warm, cosine)


@dataclasses.dataclass(frozen=True)
class AdamW:
  """Decoupled-weight-decay Adam with per-group multipliers; lr, wd and the schedule length are traced.

  Attributes:
    b1, b2, eps: Adam moments and epsilon.
    schedule: (step, base lr, warmup steps, total steps, steps per epoch) -> lr.
    group_scale: stateless `optax.multi_transform` scaling each trainable path by its group's multiplier.
  """
  b1: float
  b2: float
  eps: float
  schedule: Schedule
  group_scale: optax.GradientTransformation

  def _adam(self):
    return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)

  def init(self, trainable: Mapping[str, jax.Array]) -> optax.ScaleByAdamState:
    return self._adam().init(trainable)

  def update(self, grads, state: optax.ScaleByAdamState, params, hparams: Mapping[str, jax.Array]):
    """One AdamW step. hparams: f32 scalars (traced) 'lr', 'wd', 'warmup_steps', 'total_steps', 'steps_per_epoch'.

    Returns (new params, new state, scheduled lr).
    """
    lr, wd = hparams["lr"], hparams["wd"]
    lr_t = self.schedule(state.count, lr, hparams["warmup_steps"], hparams["total_steps"],
                         hparams["steps_per_epoch"])
    directions, state = self._adam().update(grads, state, params)
    decayed = {k: directions[k] + wd * p for k, p in params.items()}
    scaled, _ = self.group_scale.update(decayed, self.group_scale.init(params))
    params = {k: p - lr_t * scaled[k] for k, p in params.items()}
    return params, state, lr_t


def make_optimizer(optim_config, labels: Mapping[str, str]) -> AdamW:
  """The study's AdamW + warmup-cosine for the trainable paths of `labels` ({path: group}); the schedule's
  length comes with each step's hparams (`schedule_steps`)."""
  group_scale = partition.make_optimizer(labels, optax.scale, dict(optim_config.lr_mult))
  schedule = Schedule(warmup_start_lr=optim_config.warmup_start_lr, min_lr=optim_config.min_lr,
                      granularity=optim_config.schedule_granularity)
  return AdamW(b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps, schedule=schedule,
               group_scale=group_scale)
