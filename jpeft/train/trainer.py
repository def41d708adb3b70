"""One run end to end: build the model and method, load the backbone, train, evaluate, write results.

`run(config, workdir)` dispatches on `config.mode`:
  tune   train on train800, evaluate on val200
  final  train on train800val200, evaluate on test
  eval   evaluate the newest intact checkpoint in `workdir` on `config.eval_split` (`jpeft.train.evaluation`)

A run holds the workdir's lock (`jpeft.workdir_lock`) from start to end, so a second process on the same
workdir stops at once instead of replacing the first one's files. The loop is a short sequence of periodic
actions around the pure steps of `jpeft.train.steps`. Runs resume from the newest intact checkpoint in
`<workdir>/checkpoints`; data order and dropout keys are functions of (seed, epoch) and (seed, step), so a
resumed run ends bit-identical to an uninterrupted one.

Writes into workdir: metrics.jsonl, tb/ (TensorBoard), checkpoints/, result.json, init_head.npz (the head the
run starts from, WiSE-FT's zero-shot end), and logits_<split>.npy [N, C] f32 / labels_<split>.npy [N] i32 of the
final evaluation (and logits_<task>_test.npy of each of `config.shift_tasks`). result.json holds accuracy (last epoch),
best_accuracy / best_epoch (over the evaluated epochs), evals (every evaluation), trainable_params,
total_params, steps, skipped_steps, warnings (skipped steps, splits with one label), skipped_images ({count, files}:
the bad images `data.skip_bad_images` left out, each with its split, path, reason, list file and line), pretrained
(the backbone pointer), init_from (None, or the run it started from: `jpeft.train.reuse.start_from`'s record),
and, summed over the launches the run took (1 + resumes; each counted up to its last checkpoint, the last one to the end): wall_s,
train_images_per_s (steady state: without the first, compiling epoch of each launch), launches and
devices_per_launch (the global device count of each launch, over all jax processes); shift_accuracy: {'<task>_test':
accuracy} of `config.shift_tasks` (scored on the classes each covers).

With early stopping (`config.early_stopping.patience` > 0, `jpeft.train.early_stopping`) the periodic evaluations
are of the watched split (`early_stopping.split`, default the eval split), training stops after `patience` of them
without improvement, the eval split and shift tasks are scored with the best parameters, and result.json adds
early_stopping: {split, metric, patience, best_epoch, best_step, best_value, stopped_epoch, reason}.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from jpeft import interrupts, workdir_lock
from jpeft.train import (checkpointing, config_checks, early_stopping, evaluation, model_setup, optim, results,
                         reuse, run_config, sharding, steps, writers)
from jpeft.train.errors import RESUME_AFTER_FREEING, ConfigError, NonFiniteLossError, WorkdirError, WriteError
from jpeft.train.splits import Split, count_steps_per_epoch, open_mode, skipped_images, split_warnings


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs `config.mode` in `workdir` and returns the result dict also written as JSON.

  Raises workdir_lock.WorkdirLockedError (touching nothing) if another process holds the workdir."""
  config_checks.validate_config(config)
  source = config.init_from.workdir
  if source and os.path.abspath(source) == os.path.abspath(workdir):
    raise ConfigError(f"--config.init_from.workdir='{source}' is this run's own --workdir. To continue the run in "
                      "it, start the same command again without init_from (it resumes); init_from starts a new "
                      "run in a new workdir from another run's state.")
  if config.mode == "eval":
    evaluation.require_checkpoint(config, workdir)  # before the lock, which would create the workdir
  with _held(workdir):
    if config.mode == "eval":
      return evaluation.evaluate_checkpoint(config, workdir)
    return train_and_evaluate(config, workdir)


@contextlib.contextmanager
def _held(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the block (in a multi-host job only process 0 takes it: every host writes the
  same workdir). If the block fails, removes what it created and left without a file, and the workdir too if
  this run created it and nothing is left, so a failed run leaves no empty workdir behind."""
  lead = jax.process_index() == 0
  existed = set(os.listdir(workdir)) if os.path.isdir(workdir) else None
  with contextlib.ExitStack() as stack:
    try:
      if lead:
        stack.enter_context(workdir_lock.hold(workdir))
      else:
        os.makedirs(workdir, exist_ok=True)
    except workdir_lock.WorkdirLockedError:
      raise
    except OSError as e:
      raise WorkdirError(f"Cannot write to the workdir '{workdir}': {e}. Pass a writable directory with "
                         "--workdir=<path> (it is created if missing).") from e
    try:
      yield
    except BaseException:
      if lead:
        _remove_unused(workdir, existed, keep_files=_has_checkpoint(workdir))
      raise


def _has_checkpoint(workdir: str) -> bool:
  """Whether `<workdir>/checkpoints` holds a finished checkpoint (orbax names those by their step alone)."""
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _remove_unused(workdir: str, existed: Optional[set], keep_files: bool = True) -> None:
  """Removes the new entries of `workdir` (not in `existed`) that hold no file, or (keep_files=False: a run that
  saved no checkpoint, whose logs and initial head describe nothing kept) every new entry; the lock file too if
  nothing else new is left; the workdir if it is new (`existed` None) and then empty."""
  try:
    for name in set(os.listdir(workdir)) - (existed or set()) - {workdir_lock.LOCK_FILE}:
      path = os.path.join(workdir, name)
      if not os.path.isdir(path):
        if not keep_files:
          os.remove(path)
      elif not keep_files or not any(files for _, _, files in os.walk(path)):
        shutil.rmtree(path)
    if set(os.listdir(workdir)) - (existed or set()) == {workdir_lock.LOCK_FILE}:
      os.remove(os.path.join(workdir, workdir_lock.LOCK_FILE))
    if existed is None and not os.listdir(workdir):
      os.rmdir(workdir)
  except OSError:  # best effort: the run's own error is what the user needs to see
    pass


def _meta(config, epoch: int, evals: list, skipped: int, progress: dict, init_from, stopper=None,
          pretrained_digest=None, total_steps=None) -> dict:
  """What a checkpoint needs besides arrays: where the frozen backbone comes from, and the run's history;
  total_steps (the step the run ends at) tells readers whether the run finished (`reuse.completion`)."""
  return dict(epoch=epoch, evals=evals, skipped=skipped, progress=progress, init_from=init_from,
              total_steps=total_steps,
              early_stopping=stopper.to_meta() if stopper else None,
              pretrained=model_setup.pretrained_name(config), **{model_setup.PRETRAINED_DIGEST: pretrained_digest},
              method=config.method, variant=config.model.variant,
              style=config.model.style, seed=config.seed, mode=config.mode, task=config.task,
              config=config.to_json())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains on the mode's train split, evaluating every `eval_every_epochs` and at the end."""
  start_time = time.time()
  lead = jax.process_index() == 0
  setup = model_setup.build(config)
  digest = model_setup.pretrained_digest(config)
  train_data, eval_data = open_mode(config, setup.task, config.mode)
  eval_split = eval_data.name
  # The split the periodic evaluations score: early stopping's, if it names one.
  watched = Split.open(config, setup.task, config.early_stopping.split) if config.early_stopping.split else eval_data
  stopper = early_stopping.EarlyStopping.from_config(config, watched.name)
  batch_size = config.optim.batch_size
  steps_per_epoch = count_steps_per_epoch(train_data, batch_size, config.task)
  total_steps = steps_per_epoch * config.optim.epochs

  mesh = sharding.make_mesh(config.sharding.param_axis_size)
  tx = optim.make_optimizer(config.optim, setup.labels)
  eval_step = evaluation.jit_eval_step(setup.model, mesh, setup.task)
  hparams = sharding.replicate(steps.hparams_from_config(config, steps_per_epoch), mesh)
  frozen, trainable, opt_state = evaluation.place_state(config, setup, tx, mesh)
  # Outputs pinned to the inputs' layout: the donated buffers are reused and every step runs one program.
  train_step = jax.jit(steps.make_train_step(setup.model, tx), donate_argnums=(0, 1),
                       out_shardings=(sharding.shardings_of(trainable), sharding.shardings_of(opt_state),
                                      sharding.replicated(mesh)))
  # Replicated like the state it is saved with: a multi-process checkpoint cannot hold a one-device array.
  train_key = sharding.replicate(jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), mesh)

  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_max_to_keep)
  writer = writers.MetricWriter(workdir) if lead else None
  step, evals, skipped, last, bar, init_from = 0, [], 0, None, None, None
  # What earlier launches of this run did; a checkpoint carries it forward.
  earlier = dict(wall_s=0.0, timed_images=0, timed_seconds=0.0, devices_per_launch=[])
  try:
    like = dict(trainable=trainable, opt_state=opt_state, step=0, rng=jax.random.key_data(train_key))
    def check_meta(meta):
      run_config.check_same_run(config, meta["config"], workdir)
      model_setup.check_pretrained(config, meta, workdir, digest)

    restored = ckpt.restore_newest_intact(like, check_meta, set_aside_damaged=lead)
    saved_step = int(restored[0]) if restored else None
    finished = _finished_result(config, workdir, saved_step)
    if finished is not None:
      return finished
    if lead:  # what a killed process logged after its last checkpoint is replayed now: log it once
      writers.drop_after(workdir, restored[0] if restored else 0)
      results.save_init_head(workdir, setup.trainable, setup.labels)
    if restored:
      _, state, meta = restored
      # With a best item (early stopping) 'trainable' is the best parameters, 'last_trainable' where training was.
      trainable, opt_state, step = state.get("last_trainable", state["trainable"]), state["opt_state"], state["step"]
      step = int(step)
      if stopper and meta.get("early_stopping"):
        stopper.restore(meta["early_stopping"], state["trainable"] if "last_trainable" in state else None)
      train_key = jnp.asarray(state["rng"])
      evals, skipped, earlier = meta["evals"], meta["skipped"], meta.get("progress", earlier)
      init_from = meta.get("init_from")
      if writer:
        writer.write(step, {}, event="resumed", epoch=meta["epoch"])
    elif config.init_from.workdir:  # a new run (no checkpoint of its own yet) from another run's state
      start, start_opt, init_from = reuse.start_from(config, setup.trainable, setup.labels, tx)
      min_size = config.sharding.min_shard_size  # the layout place_state gave the fresh state
      trainable = sharding.shard_params(start, mesh, min_size)
      opt_state = sharding.shard_params(start_opt, mesh, min_size)
    elif config.init_from.get("peft"):  # the model setup's initial parameters are the adapter's
      init_from = dict(peft=os.path.abspath(config.init_from.peft))
    timed_images, timed_seconds = earlier["timed_images"], earlier["timed_seconds"]

    bar = tqdm.tqdm(total=total_steps, initial=step, disable=not lead, desc=f"{config.task}/{config.method}")
    pending = []
    first_epoch = step // steps_per_epoch

    def save(epochs_done: int) -> None:
      nonlocal saved_step
      progress = _progress(earlier, start_time, timed_images, timed_seconds)
      ckpt.save(step, dict(trainable=trainable, opt_state=opt_state, step=step, rng=jax.random.key_data(train_key)),
                _meta(config, epochs_done, evals, skipped, progress, init_from, stopper, digest, total_steps),
                best=stopper.params if stopper else None)
      saved_step = step

    # SIGINT / SIGTERM only set `stop` here; between steps the loop saves the step reached and stops. (In a
    # multi-process job the processes could see it at different steps and wait for each other's save forever:
    # there the signal stops the process at once, and the run resumes from its last periodic checkpoint.)
    with interrupts.deferred(enabled=jax.process_count() == 1) as stop:
      for epoch in range(first_epoch, config.optim.epochs):
        if stopper and stopper.stopped:  # resumed after the checkpoint of the epoch that stopped it
          break
        epoch_start = time.time()
        # A run stopped mid-epoch resumes there: the epoch's batches (a function of seed and epoch) before its
        # step are read and skipped, so the resumed run ends as an uninterrupted one.
        for batch in itertools.islice(train_data.train_epoch(batch_size, config.seed, epoch),
                                      step - epoch * steps_per_epoch, None):
          if stop:
            if pending:
              skipped += _flush(pending, step, epoch, config, writer, bar, batch_size, epoch_start,
                                step - epoch * steps_per_epoch, saved_step)
              pending = []
            if ckpt.latest_step() != step:
              save(epoch)
            ckpt.wait()
            raise interrupts.Interrupted(stop.signum, interrupts.run_message(
                stop.signum, step, total_steps, ckpt.directory, ckpt.latest_step()))
          rng = jax.random.fold_in(train_key, step)
          trainable, opt_state, metrics = train_step(trainable, opt_state, frozen,
                                                     sharding.shard_batch(batch, mesh), rng, hparams)
          pending.append(metrics)
          step += 1
          if step % config.log_every_steps == 0 or step % steps_per_epoch == 0:
            skipped += _flush(pending, step, epoch, config, writer, bar, batch_size, epoch_start,
                              step - epoch * steps_per_epoch, saved_step)
            pending = []
        if epoch != first_epoch:  # the first epoch of a process also compiles: not steady state
          # Read after the epoch's last flush, which waited for its last step: the device is done.
          timed_seconds += time.time() - epoch_start
          timed_images += steps_per_epoch * batch_size
        done = epoch + 1
        if done % config.eval_every_epochs == 0 or done == config.optim.epochs:
          last = evaluation.evaluate(eval_step, trainable, frozen, watched, hparams, batch_size, mesh)
          evals.append(dict(epoch=done, accuracy=last["accuracy"], loss=last["loss"]))
          if writer:
            writer.write(step, {f"{watched.name}/accuracy": last["accuracy"], f"{watched.name}/loss": last["loss"]},
                         epoch=done)
          if stopper:
            stopper.observe(done, step, last, trainable)
        if stopper and done == config.optim.epochs:
          stopper.finish(done)
        if done % config.checkpoint_every_epochs == 0 or done == config.optim.epochs or (stopper and stopper.stopped):
          save(done)
      ckpt.wait()
  except interrupts.Interrupted as e:
    if e.message:
      raise
    # A signal outside the steps (an evaluation, a save) or during the last one: say where the run is.
    raise interrupts.Interrupted(e.signum, interrupts.run_message(
        e.signum, step, total_steps, ckpt.directory, interrupts.newest_checkpoint(ckpt.directory))) from None
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
    if writer:
      writer.close()

  shift = evaluation.shift_sets(config, setup.model, mesh)
  warnings = _check_skipped(config, skipped, step, workdir) + split_warnings(train_data, watched, eval_data)
  if stopper:  # the result is the best parameters' (resumed or not)
    trainable = stopper.params
  if last is None or stopper:  # resumed from the final checkpoint, or the last evaluation is not the result's
    last = evaluation.evaluate(eval_step, trainable, frozen, eval_data, hparams, batch_size, mesh)
  shifted = {name: evaluation.evaluate(shift_step, trainable, frozen, data, hparams, batch_size, mesh)
             for name, data, shift_step in shift}
  best = max(evals, key=lambda e: e["accuracy"])
  num_trainable = sum(int(np.prod(v.shape)) for v in setup.trainable.values())
  num_total = num_trainable + sum(int(np.prod(v.shape)) for v in setup.frozen.values())
  progress = _progress(earlier, start_time, timed_images, timed_seconds)
  result = dict(task=config.task, method=config.method, mode=config.mode, eval_split=eval_split,
                accuracy=last["accuracy"], last_epoch=evals[-1]["epoch"], best_accuracy=best["accuracy"],
                best_epoch=best["epoch"], evals=evals, trainable_params=num_trainable,
                total_params=num_total, steps=step, skipped_steps=skipped, warnings=warnings,
                wall_s=progress["wall_s"],
                train_images_per_s=timed_images / timed_seconds if timed_seconds else None,
                launches=len(progress["devices_per_launch"]),
                devices_per_launch=progress["devices_per_launch"],
                pretrained=model_setup.pretrained_name(config), init_from=init_from,
                shift_accuracy={name: out["accuracy"] for name, out in shifted.items()},
                skipped_images=skipped_images(train_data, watched, eval_data, *(data for _, data, _ in shift)),
                **({"early_stopping": stopper.record()} if stopper else {}))
  try:
    if config.save_merged:  # every process: sharded arrays are gathered, and orbax's save (process 0 writes)
      # is a collective
      merged = sharding.to_host((trainable, frozen))
      results.save_merged(workdir, setup.methods, *merged, config.merge_factor)
    if lead:
      for name, out in [(eval_split, last), *shifted.items()]:
        results.save_predictions(workdir, name, out)
      results.write_json(os.path.join(workdir, "result.json"), result)
  except OSError as e:
    failed = (f"'{e.path}' could not be written: {e.cause}" if isinstance(e, WriteError) else
              f"the results could not be written to '{workdir}': {e}")
    raise WorkdirError(f"Training finished but {failed}. The final "
                       f"checkpoint is saved; {RESUME_AFTER_FREEING}: it restores the checkpoint and only "
                       "redoes the evaluation.") from e
  return result


def _finished_result(config, workdir: str, saved_step: Optional[int]) -> Optional[dict]:
  """result.json of a run that trained to its end, whose newest checkpoint (at `saved_step`) is that end: said in
  one line and returned unchanged, unless `config.reevaluate` asks to evaluate the checkpoint again; else None."""
  path = os.path.join(workdir, "result.json")
  if saved_step is None or config.reevaluate or not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  if result.get("steps") != saved_step:  # written by an earlier end than the newest checkpoint: not this one's
    return None
  if jax.process_index() == 0:
    print(f"jpeft: the run in '{workdir}' is finished (step {saved_step}, {result['eval_split']} accuracy "
          f"{result['accuracy']:.4f}); nothing was changed. To evaluate its final checkpoint again and rewrite "
          "result.json, add --config.reevaluate=True.", flush=True)
  return result


def _progress(earlier: dict, start_time: float, timed_images: int, timed_seconds: float) -> dict:
  """The run's totals so far: earlier launches' (from the checkpoint) plus this one's."""
  return dict(wall_s=earlier["wall_s"] + time.time() - start_time, timed_images=timed_images,
              timed_seconds=timed_seconds,
              devices_per_launch=earlier["devices_per_launch"] + [jax.device_count()])


def _check_skipped(config, skipped: int, steps_done: int, workdir: str) -> list[str]:
  """Warnings about skipped steps (also logged); NonFiniteLossError past `optim.max_skipped_fraction`."""
  if not skipped:
    return []
  fraction = skipped / steps_done
  message = (f"{skipped} of {steps_done} steps ({fraction:.1%}) had a non-finite loss or gradients and were "
             "skipped (optim.nan_policy=skip)")
  limit = config.optim.max_skipped_fraction
  if fraction > limit:
    raise NonFiniteLossError(
        f"{message}, more than optim.max_skipped_fraction = {limit}: the model is not what the recipe trains, "
        f"so no result was written. The final checkpoint is saved in '{workdir}'. Lower --config.optim.lr, or "
        "raise --config.optim.max_skipped_fraction and run the same command again to evaluate it.")
  logging.warning("%s.", message)
  return [f"{message}."]


def _flush(pending: list, step: int, epoch: int, config, writer, bar, batch_size: int, epoch_start: float,
           steps_in_epoch: int, saved_step: Optional[int]) -> int:
  """Fetches the pending step metrics, enforces the NaN policy, logs their mean. Returns #skipped steps.

  saved_step: the step of the run's newest checkpoint, None if it has none (named by the NaN error)."""
  fetched = jax.device_get(pending)
  # Read after the fetch, which waits for the device to finish these steps (dispatch returns before it does).
  seconds = time.time() - epoch_start
  finite = [bool(m["finite"]) for m in fetched]
  if not all(finite):
    first_bad = step - len(finite) + finite.index(False) + 1
    if config.optim.nan_policy == "stop":
      raise NonFiniteLossError(
          f"The loss or gradients became NaN/inf at step {first_bad} (epoch {epoch + 1}) of the run "
          f"(optim.lr = {config.optim.lr}, optim.wd = {config.optim.wd}). The run stopped; "
          + (f"its last checkpoint (step {saved_step}) is the last good state and was not overwritten. "
             if saved_step is not None else
             "it had written no checkpoint yet, so nothing of it was kept (the same command starts it over). ")
          + "Lower --config.optim.lr, or set --config.optim.nan_policy=skip to skip such batches as the study's "
          "code did.")
  good = [m for m, ok in zip(fetched, finite) if ok]
  mean = {k: float(np.mean([m[k] for m in good])) for k in ("loss", "accuracy", "lr")} if good else {}
  scalars = {f"train/{k}": v for k, v in mean.items()}
  scalars["train/images_per_s"] = steps_in_epoch * batch_size / max(seconds, 1e-9)
  if writer:
    writer.write(step, scalars, epoch=epoch + 1, skipped=len(finite) - len(good))
  bar.update(len(fetched))
  bar.set_postfix(loss=f"{mean.get('loss', float('nan')):.4f}", lr=f"{mean.get('lr', 0.0):.2e}",
                  img_s=f"{scalars['train/images_per_s']:.0f}")
  return len(finite) - len(good)
