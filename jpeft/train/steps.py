"""Pure train and eval steps: functions of arrays only, so they can be jitted, sharded and `jax.vmap`ped.

    train_step(trainable, opt_state, frozen, batch, rng, hparams) -> (trainable, opt_state, metrics)
    eval_step(trainable, frozen, batch, hparams) -> {'logits', 'correct', 'loss'}

`trainable` and `frozen` are flat {path: array} dicts from `jpeft.peft.partition.split`; only `trainable` is
differentiated. `hparams` holds the runtime hyperparameters as f32 scalars: 'lr', 'wd', 'merge_factor',
'warmup_steps', 'total_steps', 'steps_per_epoch'. A sweep vmaps over trainable, opt_state, rng and hparams
while sharing frozen and batch.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jpeft.peft import partition
from jpeft.train import optim


def hparams_from_config(config, steps_per_epoch: int) -> dict[str, jax.Array]:
  """The traced hyperparameters of one run whose epochs have `steps_per_epoch` optimizer steps."""
  schedule = optim.schedule_steps(config.optim, steps_per_epoch)
  return dict(lr=jnp.float32(config.optim.lr), wd=jnp.float32(config.optim.wd),
              merge_factor=jnp.float32(config.merge_factor),
              **{name: jnp.float32(value) for name, value in schedule.items()})


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(model, tx: optim.AdamW) -> Callable:
  """Returns the pure train step for `model` (a linen module with a classification head).

  batch: {'image': f32 [B, H, W, 3], 'label': i32 [B]}. metrics: f32 scalars 'loss', 'accuracy', 'lr' and
  bool 'finite'. A step whose loss or gradients are not finite leaves parameters and optimizer state unchanged,
  so the state is the last good one whether the trainer then skips the batch or stops the run.
  """

  def train_step(trainable, opt_state, frozen, batch, rng, hparams):
    def loss_fn(t):
      logits = model.apply({"params": partition.combine(t, frozen)}, batch["image"], train=True,
                           merge_factor=hparams["merge_factor"], rngs={"dropout": rng})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    new_trainable, new_state, lr = tx.update(grads, opt_state, trainable, hparams)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    keep_good = lambda new, old: jnp.where(finite, new, old)
    new_trainable = jax.tree.map(keep_good, new_trainable, trainable)
    new_state = jax.tree.map(keep_good, new_state, opt_state)
    metrics = dict(loss=loss, accuracy=jnp.mean(jnp.argmax(logits, -1) == batch["label"]), lr=lr,
                   finite=finite)
    return new_trainable, new_state, metrics

  return train_step


def make_eval_step(model, class_mask=None) -> Callable:
  """Returns the pure eval step. batch may carry 'mask' (bool [B], False for padding examples).

  class_mask: bool [C] or None. For evaluation sets that cover some of the model's classes (ImageNet-A / -R:
  200 of 1000, `jpeft.data.class_mask`), the other logits are set to -inf, so argmax and loss are over the
  covered classes only.
  Output: logits f32 [B, C] (masked), and masked sums over the batch: 'correct' and 'loss' (f32 scalars).
  """

  def eval_step(trainable, frozen, batch, hparams):
    logits = model.apply({"params": partition.combine(trainable, frozen)}, batch["image"], train=False,
                         merge_factor=hparams["merge_factor"])
    if class_mask is not None:
      logits = jnp.where(jnp.asarray(class_mask), logits, -jnp.inf)
    mask = batch.get("mask", jnp.ones(batch["label"].shape, bool))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]) & mask
    return dict(logits=logits, correct=correct.sum(), loss=jnp.where(mask, loss, 0.0).sum())

  return eval_step
