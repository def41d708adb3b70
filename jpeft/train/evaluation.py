"""Evaluation of a whole split, and mode 'eval': the newest intact checkpoint of a finished run, again.

Mode 'eval' checks that its config describes the run in the workdir (`run_config.EVAL_MAY_DIFFER` lists
what may differ) and writes `eval_<split>.json`, `eval_logits_<split>.npy` and `eval_labels_<split>.npy`,
never the training run's `result.json` or predictions.
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from jpeft.train import checkpointing, model_setup, optim, results, run_config, sharding, steps
from jpeft.train.errors import ConfigError
from jpeft.train.splits import Split, mode_splits


def evaluate(eval_step, trainable, frozen, split: Split, hparams, batch_size: int, mesh) -> dict:
  """Accuracy, mean loss, and the logits [N, C] and labels [N] of a whole split."""
  logits, labels, correct, loss = [], [], 0, 0.0
  for batch in split.eval_batches(batch_size):
    out = eval_step(trainable, frozen, sharding.shard_batch(batch, mesh), hparams)
    logits.append(np.asarray(jax.device_get(out["logits"]))[batch["mask"]])
    labels.append(batch["label"][batch["mask"]])
    correct += int(out["correct"])
    loss += float(out["loss"])
  return dict(accuracy=correct / split.size, loss=loss / split.size, logits=np.concatenate(logits),
              labels=np.concatenate(labels))


def jit_eval_step(model, mesh):
  # Replicated outputs: every process can read all logits, also when the batch spans several hosts.
  return jax.jit(steps.make_eval_step(model), out_shardings=sharding.replicated(mesh))


def _checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def require_checkpoint(workdir: str) -> None:
  """Raises ConfigError, creating nothing, if `workdir` holds no checkpoint to evaluate."""
  ckpt = checkpointing.Checkpointer(_checkpoint_dir(workdir), create=False)
  latest = ckpt.latest_step()
  ckpt.close()
  if latest is None:
    raise ConfigError(f"mode 'eval' needs a checkpoint, but '{_checkpoint_dir(workdir)}' has none. Pass the "
                      "--workdir of a finished training run (same --config), or train first with "
                      "--config.mode=tune or final.")


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the newest intact checkpoint in `workdir` on `config.eval_split` (default: the eval split of
  the mode it was trained in); writes eval_<split>.json and eval_logits_<split>.npy / eval_labels_<split>.npy.

  Raises ConfigError naming every field where `config` and the checkpoint's config disagree."""
  setup = model_setup.build(config)
  mesh = sharding.make_mesh()
  tx = optim.make_optimizer(config.optim, setup.labels)
  like = dict(trainable=sharding.replicate(setup.trainable, mesh),
              opt_state=sharding.replicate(tx.init(setup.trainable), mesh), step=0,
              rng=sharding.replicate(jax.random.key_data(jax.random.PRNGKey(0)), mesh))

  def check(meta):
    run_config.check_same_run(config, meta["config"], workdir, may_differ=run_config.EVAL_MAY_DIFFER)

  ckpt = checkpointing.Checkpointer(_checkpoint_dir(workdir), create=False)
  try:
    _, state, meta = ckpt.restore_newest_intact(like, check, set_aside_damaged=False)
  finally:
    ckpt.close()
  split, spec = (config.eval_split, config.eval_split) if config.eval_split else mode_splits(config, meta["mode"])[1]
  result = evaluate(jit_eval_step(setup.model, mesh), state["trainable"],
                    sharding.replicate(setup.frozen, mesh), Split.open(config, setup.task, split, spec),
                    sharding.replicate(steps.hparams_from_config(config, 1), mesh), config.optim.batch_size, mesh)
  out = dict(task=config.task, method=config.method, split=split, accuracy=result["accuracy"],
             loss=result["loss"], step=int(state["step"]), epoch=meta["epoch"], workdir=os.path.abspath(workdir))
  if jax.process_index() == 0:
    results.save_predictions(workdir, split, result, prefix=results.EVAL_PREFIX)
    results.write_json(os.path.join(workdir, f"{results.EVAL_PREFIX}{split}.json"), out)
  return out
