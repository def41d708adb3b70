"""Evaluation of a whole split, and mode 'eval': the newest intact checkpoint of a finished run, again.

Mode 'eval' checks that its config describes the run in the workdir (`run_config.EVAL_MAY_DIFFER` lists
what may differ); a new workdir without checkpoints evaluates the run `config.init_from.workdir` names instead
(on this config's task and split: e.g. a distribution-shifted copy of its task). It writes `eval_<split>.json`,
`eval_logits_<split>.npy` and `eval_labels_<split>.npy`, never the training run's `result.json` or predictions.
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from jpeft.data import tasks
from jpeft.train import (checkpointing, model_setup, optim, results, reuse, run_config, sharding,
                         steps)
from jpeft.train.errors import ConfigError
from jpeft.train.splits import Split, mode_splits, skipped_images


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


def jit_eval_step(model, mesh, task=None):
  """The jitted eval step for evaluation sets of `task`: scored on the classes its data covers
  (`Task.class_subset`, e.g. ImageNet-A's 200 of 1000), all classes when it covers all or is None."""
  subset = None if task is None or task.class_subset is None else tasks.class_mask(task)
  # Replicated outputs: every process can read all logits, also when the batch spans several hosts.
  return jax.jit(steps.make_eval_step(model, subset), out_shardings=sharding.replicated(mesh))


def shift_sets(config, model, mesh) -> list[tuple[str, Split, object]]:
  """(name, split, eval step) of each of `config.shift_tasks`' 'test' split, as the final evaluation scores
  them beside the run's own eval split; name is '<task>_test' (the predictions' file suffix)."""
  out = []
  for name in config.shift_tasks:
    task = tasks.get_task(name)
    out.append((f"{name}_test", Split.open(config, task, "test"), jit_eval_step(model, mesh, task)))
  return out


def place_state(config, setup: model_setup.Setup, tx, mesh):
  """(frozen, trainable, opt_state) of `setup` on `mesh` in the layout of `config.sharding`
  (`jpeft.train.sharding.shard_params`); a checkpoint restored `like` these arrays takes the same layout."""
  min_size = config.sharding.min_shard_size
  return (sharding.shard_params(setup.frozen, mesh, min_size), sharding.shard_params(setup.trainable, mesh, min_size),
          sharding.shard_params(tx.init(setup.trainable), mesh, min_size))


def _checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def _has_checkpoint(workdir: str) -> bool:
  ckpt = checkpointing.Checkpointer(_checkpoint_dir(workdir), create=False)
  latest = ckpt.latest_step()
  ckpt.close()
  return latest is not None


def require_checkpoint(config, workdir: str) -> None:
  """Raises ConfigError, creating nothing, if there is no checkpoint to evaluate: `workdir` has none and
  `config.init_from.workdir` names no other run."""
  if not config.init_from.workdir and not config.init_from.get("peft") and not _has_checkpoint(workdir):
    raise ConfigError(f"mode 'eval' needs a checkpoint, but '{_checkpoint_dir(workdir)}' has none. Pass the "
                      "--workdir of a finished training run (same --config), or train first with "
                      "--config.mode=tune or final (or evaluate another run's checkpoint into this new workdir "
                      "with --config.init_from.workdir=<its workdir>).")


def _restore_source(config, setup, mesh) -> tuple[dict, dict]:
  """(state, meta) of the run `config.init_from.workdir` names, fitted to this config's model; its head must fit
  (an evaluation cannot train a new one)."""
  source = reuse.load_run(config.init_from.workdir, "--config.init_from.workdir",
                          config.init_from.allow_unfinished, reuse.ALLOW_FLAG)
  reuse.check_compatible(config, source)
  params, head_kept = reuse.take_params(source, setup.trainable, setup.labels, keep_head=True)
  if not head_kept:
    raise ConfigError(f"mode 'eval' with --config.init_from.workdir='{source.workdir}' evaluates that run's head, "
                      f"which was trained for task '{source.config.task}' and does not fit task '{config.task}' "
                      f"({setup.task.num_classes} classes). Evaluate on a task with the same classes, or train a "
                      "new head with --config.mode=tune or final.")
  meta = dict(source.meta, init_from=dict(workdir=source.workdir, **source.completion.record(),
                                          task=source.config.task))
  return dict(trainable=sharding.replicate(params, mesh), step=source.step), meta


def restore_newest(config: ml_collections.ConfigDict, workdir: str, setup: model_setup.Setup, mesh) -> tuple:
  """-> (state, meta) of the newest intact checkpoint in `workdir`, after checking that `config` describes its
  run (`run_config.EVAL_MAY_DIFFER` may differ), or, when `workdir` has none, of the run
  `config.init_from.workdir` names, or the PEFT adapter `config.init_from.peft` names (evaluated on mode
  'final''s split unless config.eval_split says). state: trainable (flat, replicated on `mesh`), opt_state, step, rng;
  meta: what `trainer._meta` saved (epoch, mode, evals, config, ...). Sets nothing aside. Under early stopping,
  trainable is the best parameters (`jpeft.train.checkpointing`)."""
  _, trainable, opt_state = place_state(config, setup, optim.make_optimizer(config.optim, setup.labels), mesh)
  like = dict(trainable=trainable, opt_state=opt_state, step=0,
              rng=sharding.replicate(jax.random.key_data(jax.random.PRNGKey(0)), mesh))

  def check(meta):
    run_config.check_same_run(config, meta["config"], workdir, may_differ=run_config.EVAL_MAY_DIFFER)

  if _has_checkpoint(workdir):  # the run trained here, also when it started from init_from
    ckpt = checkpointing.Checkpointer(_checkpoint_dir(workdir), create=False)
    try:
      _, state, meta = ckpt.restore_newest_intact(like, check, set_aside_damaged=False)
    finally:
      ckpt.close()
  elif config.init_from.get("peft"):  # the adapter, as model_setup put it in place (the head included)
    state = dict(trainable=sharding.replicate(setup.trainable, mesh), step=0)
    meta = dict(mode="final", epoch=0, init_from=dict(peft=os.path.abspath(config.init_from.peft)))
  else:
    state, meta = _restore_source(config, setup, mesh)
  return state, meta


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the newest intact checkpoint in `workdir` on `config.eval_split` (default: the eval split of
  the mode it was trained in); writes eval_<split>.json and eval_logits_<split>.npy / eval_labels_<split>.npy.

  Raises ConfigError naming every field where `config` and the checkpoint's config disagree."""
  setup = model_setup.build(config)
  mesh = sharding.make_mesh(config.sharding.param_axis_size)
  state, meta = restore_newest(config, workdir, setup, mesh)
  frozen, _, _ = place_state(config, setup, optim.make_optimizer(config.optim, setup.labels), mesh)
  split, spec = (config.eval_split, config.eval_split) if config.eval_split else mode_splits(config, meta["mode"])[1]
  data = Split.open(config, setup.task, split, spec)
  result = evaluate(jit_eval_step(setup.model, mesh, setup.task), state["trainable"], frozen, data,
                    sharding.replicate(steps.hparams_from_config(config, 1), mesh), config.optim.batch_size, mesh)
  # Under early stopping the checkpoint's parameters are its best ones: name their step and epoch.
  best = (meta.get("early_stopping") or {}).get("best") or dict(step=int(state["step"]), epoch=meta["epoch"])
  out = dict(task=config.task, method=config.method, split=split, accuracy=result["accuracy"],
             loss=result["loss"], step=best["step"], epoch=best["epoch"], workdir=os.path.abspath(workdir),
             init_from=meta.get("init_from"), warnings=list(data.warnings),
             skipped_images=skipped_images(data))
  if jax.process_index() == 0:
    results.save_predictions(workdir, split, result, prefix=results.EVAL_PREFIX)
    results.write_json(os.path.join(workdir, f"{results.EVAL_PREFIX}{split}.json"), out)
  return out
