"""Trains many trials of one shape group at once: the train step `jax.vmap`ped over a leading trial axis.

Within a group every trial has the same parameter shapes, so the per-trial state (trainable parameters,
optimizer state, dropout keys, and the traced hyperparameters lr, wd, merge_factor) is stacked to
[T, ...] and one compiled program advances all T trials per step. The frozen backbone is shared (not
stacked). With several devices the trial axis is sharded over them (mesh axis 'trials'); each device runs
its trials on the whole batch, so nothing but the result crosses devices.

What a trial gets, matching `jpeft.train.trainer.train_and_evaluate` run with `config.seed = trial.seed`:
  head and PEFT parameters   model.init with fold_in(PRNGKey(seed), 0) (vmapped over the trials' keys)
  backbone parameters        the pretrained checkpoint; without one, model.init at the sweep's config.seed
  dropout keys               fold_in(fold_in(PRNGKey(seed), 1), step)
  data order                 trainer.Split.train_epoch(batch_size, seed, epoch); when all trials of a
                             chunk share the seed the batch is shared (not copied per trial), otherwise
                             each trial gathers its own batch ([T, B, ...]).
So a trial trained here ends where the trainer would end for that config, up to float reassociation.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jpeft.peft import base, partition
from jpeft.sweep.grid import Trial, shape_groups
from jpeft.train import optim, steps, trainer
from jpeft.train.errors import ConfigError

TRIAL_AXIS = "trials"


def make_trial_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all) whose axis 'trials' splits the trial axis."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (TRIAL_AXIS,))


def trial_config(config: ml_collections.ConfigDict, trial: Trial, mode: str, fold: bool = True):
  """The single-run config of `trial` (what `python -m jpeft.main` would train): method, peft, lr, wd, seed.

  With `fold`, foldable fields (scale) are set to 1.0 here and carried by the traced merge_factor instead.
  """
  config = copy.deepcopy(config)
  with config.unlocked():
    config.task, config.method, config.mode, config.seed = trial.task, trial.method, mode, trial.seed
    config.optim.lr, config.optim.wd = trial.lr, trial.wd
    for method, values in trial.peft_overrides(fold).items():
      config.peft[method] = {**(config.peft[method].to_dict() if method in config.peft else {}), **values}
  return config


def _stack(trees: Sequence) -> dict:
  return jax.tree.map(lambda *x: np.stack(x), *trees)


def _pad(items: list, multiple: int) -> list:
  """Repeats the last item so the trial axis divides over the devices (padded trials are discarded)."""
  return items + [items[-1]] * (-len(items) % multiple)


class GroupRunner:
  """Compiled vmapped steps for one shape group; `train(trials)` trains one chunk of it.

  Args:
    config: the sweep's base config (data, model, optim, epochs, eval_every_epochs).
    trials: the group (same `Trial.shape_key`).
    mode: 'tune' (train800 -> val200) or 'final' (train800val200 -> test).
    data: {(task, split name): trainer.Split} cache shared by the caller's groups; missing splits are opened
      into it.
    mesh: trial mesh (default: all devices).
  """

  def __init__(self, config, trials: Sequence[Trial], mode: str, data: dict, mesh: Optional[Mesh] = None):
    self.config = trial_config(config, trials[0], mode)
    self.config.seed = config.seed  # the backbone (when not pretrained) is the sweep's, shared by all trials
    trainer.validate_config(self.config)
    self.mode = mode
    self.setup = trainer.build(self.config)
    train_split, self.eval_split = trainer.SPLITS[mode]
    for split in (train_split, self.eval_split):
      if (trials[0].task, split) not in data:
        data[(trials[0].task, split)] = trainer.Split.open(self.config, self.setup.task, split)
    self.train_data = data[(trials[0].task, train_split)]
    self.eval_data = data[(trials[0].task, self.eval_split)]
    self.batch_size = self.config.optim.batch_size
    self.steps_per_epoch = self.train_data.size // self.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f"Config field 'optim.batch_size' = {self.batch_size} is larger than the {train_split} "
                        f"split of '{trials[0].task}' ({self.train_data.size} examples), so drop_last leaves "
                        "no batch: lower --config.optim.batch_size.")
    self.mesh = mesh or make_trial_mesh()
    tx = optim.make_optimizer(self.config.optim, self.setup.labels, self.steps_per_epoch)
    train_step = steps.make_train_step(self.setup.model, tx)
    eval_step = steps.make_eval_step(self.setup.model)

    def multi_step(trainable, opt_state, frozen, batch, train_keys, step, hparams, batch_axis):
      rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, step)
      return jax.vmap(train_step, in_axes=(0, 0, None, batch_axis, 0, 0))(trainable, opt_state, frozen, batch,
                                                                          rngs, hparams)

    # batch_axis: None shares one batch across the trials, 0 gives each trial its own.
    # Outputs pinned to the trial sharding the inputs have, so the second step reuses the first's program.
    stacked = NamedSharding(self.mesh, P(TRIAL_AXIS))
    self._train = jax.jit(multi_step, static_argnums=(7,), donate_argnums=(0, 1), out_shardings=stacked)
    self._eval = jax.jit(jax.vmap(eval_step, in_axes=(0, None, None, 0)), out_shardings=stacked)
    self._init_opt = jax.jit(jax.vmap(tx.init), out_shardings=stacked)
    size = self.config.data.image_size
    self._init_params = jax.jit(jax.vmap(
        lambda key: self.setup.model.init(key, jnp.zeros((1, size, size, 3)), train=False)["params"]))
    self.num_trainable = sum(int(np.prod(v.shape)) for v in self.setup.trainable.values())
    self.frozen = jax.device_put(self.setup.frozen, NamedSharding(self.mesh, P()))

  def _put(self, tree, stacked: bool):
    return jax.device_put(tree, NamedSharding(self.mesh, P(TRIAL_AXIS) if stacked else P()))

  def _init_trainable(self, seeds: Sequence[int]) -> dict:
    """Stacked trainable parameters [T, ...]: head and PEFT from each seed, trainable backbone shared."""
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 0) for s in seeds])
    fresh = partition.flatten(jax.device_get(self._init_params(keys)))
    return {path: fresh[path] if self.setup.labels[path] in (base.HEAD, base.PEFT)
            else np.broadcast_to(value, (len(seeds), *np.shape(value)))
            for path, value in self.setup.trainable.items()}

  def _batches(self, seeds: Sequence[int], epoch: int):
    """Yields (batch, batch_axis): shared when all seeds are equal, else stacked per trial [T, B, ...]."""
    unique = sorted(set(seeds))
    streams = [self.train_data.train_epoch(self.batch_size, s, epoch) for s in unique]
    for per_seed in zip(*streams):
      if len(unique) == 1:
        yield per_seed[0], None
      else:
        by_seed = dict(zip(unique, per_seed))
        yield _stack([by_seed[s] for s in seeds]), 0

  def evaluate(self, trainable, hparams, size: int) -> dict:
    """Per-trial accuracy and mean loss [T] (first `size` trials) and logits [T, N, C] on the eval split."""
    logits, correct, loss = [], 0, 0.0
    for batch in self.eval_data.eval_batches(self.batch_size):
      out = jax.device_get(self._eval(trainable, self.frozen, self._put(batch, False), hparams))
      logits.append(out["logits"][:size][:, batch["mask"]])
      correct = correct + out["correct"][:size]
      loss = loss + out["loss"][:size]
    n = self.eval_data.size
    return dict(accuracy=np.asarray(correct) / n, loss=np.asarray(loss) / n, logits=np.concatenate(logits, 1))

  def train(self, trials: Sequence[Trial]) -> tuple[list[dict], np.ndarray]:
    """Trains `trials` (a chunk of this group) together and evaluates them.

    Returns one result row per trial (identity, accuracy at the last epoch, evals, non-finite steps, ...)
    and their eval-split logits [T, N, C].
    """
    start = time.time()
    size = len(trials)
    padded = _pad(list(trials), self.mesh.size)
    seeds = [t.seed for t in padded]
    base_merge = float(self.config.merge_factor)
    hparams = self._put(dict(lr=np.float32([t.lr for t in padded]), wd=np.float32([t.wd for t in padded]),
                             merge_factor=np.float32([base_merge * t.merge_multiplier() for t in padded])),
                        True)
    trainable = self._put(self._init_trainable(seeds), True)
    opt_state = self._init_opt(trainable)
    train_keys = self._put(np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(s), 1)) for s in seeds]),
                           True)
    epochs = self.config.optim.epochs
    evals: list[dict] = []
    nonfinite = np.zeros(len(padded), np.int64)
    step = 0
    for epoch in range(epochs):
      finite = []
      for batch, axis in self._batches(seeds, epoch):
        trainable, opt_state, metrics = self._train(trainable, opt_state, self.frozen,
                                                    self._put(batch, axis == 0), train_keys, np.int32(step),
                                                    hparams, axis)
        finite.append(metrics["finite"])
        step += 1
      nonfinite += len(finite) - np.sum(jax.device_get(finite), axis=0)
      done = epoch + 1
      if done % self.config.eval_every_epochs == 0 or done == epochs:
        result = self.evaluate(trainable, hparams, size)
        evals.append(dict(epoch=done, accuracy=result["accuracy"], loss=result["loss"]))
    wall = time.time() - start
    stop_on_nan = self.config.optim.nan_policy == "stop"
    rows = []
    for i, trial in enumerate(trials):
      history = [dict(epoch=e["epoch"], accuracy=float(e["accuracy"][i]), loss=float(e["loss"][i]))
                 for e in evals]
      best = max(history, key=lambda e: e["accuracy"])
      rows.append(dict(trial.row(), stage=self.mode, eval_split=self.eval_split,
                       accuracy=history[-1]["accuracy"], loss=history[-1]["loss"],
                       best_accuracy=best["accuracy"], best_epoch=best["epoch"], evals=history,
                       nonfinite_steps=int(nonfinite[i]), diverged=bool(stop_on_nan and nonfinite[i] > 0),
                       trainable_params=self.num_trainable, steps=step, chunk_trials=size,
                       chunk_wall_s=wall))
    return rows, result["logits"]


def run_trials(config, trials: Sequence[Trial], mode: str, trial_batch: int,
               on_chunk: Optional[Callable[[list[dict], np.ndarray], None]] = None,
               mesh: Optional[Mesh] = None, data: Optional[dict] = None) -> list[dict]:
  """Trains `trials` in shape groups, `trial_batch` trials per compiled call, and returns their rows.

  Args:
    config: base config; its task/method/lr/wd/peft/seed are replaced per trial.
    trials: any mix of shapes (grouped here by `Trial.shape_key`).
    mode: 'tune' or 'final'.
    trial_batch: trials trained together (bounded by memory); rounded up to a multiple of the devices.
    on_chunk: called with (rows, logits [T, N, C]) after each chunk, e.g. to record them (resuming).
    mesh: trial mesh; default all devices.
    data: split cache {(task, split name): trainer.Split} to share loading across calls.
  """
  if not isinstance(trial_batch, int) or isinstance(trial_batch, bool) or trial_batch < 1:
    raise ConfigError(f"trial_batch = {trial_batch!r} is not usable: expected a positive integer, the number "
                      "of trials trained together (lower it if a chunk does not fit in memory).")
  if mode not in trainer.SPLITS:
    raise ConfigError(f"Sweep mode '{mode}' is not one of {tuple(trainer.SPLITS)}.")
  data = {} if data is None else data
  rows: list[dict] = []
  for group in shape_groups(trials):
    runner = GroupRunner(config, group, mode, data, mesh)
    for i in range(0, len(group), trial_batch):
      chunk_rows, logits = runner.train(group[i:i + trial_batch])
      if on_chunk is not None:
        on_chunk(chunk_rows, logits)
      rows.extend(chunk_rows)
  return rows
