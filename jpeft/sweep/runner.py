"""Trains many trials of one shape group at once: the train step `jax.vmap`ped over a leading trial axis.

Within a group every trial has the same parameter shapes, so the per-trial state (trainable parameters,
optimizer state, dropout keys, and the traced hyperparameters lr, wd, merge_factor) is stacked to
[T, ...] and one compiled program advances all T trials per step. The frozen backbone is shared (not
stacked). With several devices the trial axis is sharded over them (mesh axis 'trials'); each device runs
its trials on the whole batch, so nothing but the result crosses devices. After `jax.distributed.initialize`
the mesh spans the devices of all processes: every process runs the same chunks (same trials, same batches)
and trains the trials its devices own; results are gathered to every process.

What a trial gets, matching `jpeft.train.trainer.train_and_evaluate` run with `config.seed = trial.seed`:
  head and PEFT parameters   model.init with fold_in(PRNGKey(seed), 0) (once per distinct seed)
  backbone parameters        the pretrained checkpoint; without one, model.init at the sweep's config.seed
  dropout keys               fold_in(fold_in(PRNGKey(seed), 1), step)
  data order                 splits.Split.train_epoch(batch_size, seed, epoch); when all trials of a
                             chunk share the seed the batch is shared (not copied per trial), otherwise
                             each trial gathers its own batch ([T, B, ...]).
So a trial trained here ends where the trainer would end for that config, up to float reassociation.

Padding (`pad=True`, the sweep's `grid.pad_shapes`): trials that differ only in paddable fields share one
program at the group's largest values; `jpeft.sweep.padding` groups them and pads their parameters.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jpeft import interrupts
from jpeft.peft import base, partition
from jpeft.sweep import fit, padding
from jpeft.sweep.grid import Trial, trial_config
from jpeft.train import config_checks, model_setup, optim, sharding, splits, steps
from jpeft.train.errors import ConfigError

TRIAL_AXIS = "trials"
_BAR_MIN_STEPS = 50  # epochs shorter than this (VTAB-1K's 13 steps) get no progress bar of their own


def make_trial_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all) whose axis 'trials' splits the trial axis."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (TRIAL_AXIS,))


def _stack(trees: Sequence) -> dict:
  return jax.tree.map(lambda *x: np.stack(x), *trees)


def _check_mode(mode: str) -> None:
  if mode not in config_checks.SPLITS:
    raise ConfigError(f"Sweep mode '{mode}' is not one of {tuple(config_checks.SPLITS)}.")


def check_trial_batch(trial_batch) -> None:
  """ConfigError unless `trial_batch` is a positive integer or 'auto' (see `jpeft.sweep.fit`)."""
  if trial_batch != fit.AUTO and (not isinstance(trial_batch, int) or isinstance(trial_batch, bool)
                                  or trial_batch < 1):
    raise fit.trial_batch_error(trial_batch)


def _pad(items: list, multiple: int) -> list:
  """Repeats the last item so the trial axis divides over the devices (the repeats are discarded)."""
  return items + [items[-1]] * (-len(items) % multiple)


class GroupRunner:
  """Compiled vmapped steps for one shape group; `train(trials, mode)` trains one chunk of it.

  The programs depend on shapes only: learning rate, weight decay, merge factor and the schedule's length are
  traced, so the tune and final stages (and every chunk of either) reuse one compiled train step.

  Args:
    config: the sweep's base config (data, model, optim, epochs, eval_every_epochs).
    trials: the group (same `Trial.shape_key`, or with `padded` the same up to those fields).
    data: splits.Split cache (see `splits.open_mode`) shared by the caller's groups; missing splits are opened
      into it when a stage first needs them.
    mesh: trial mesh (default: all devices).
    shape: the trial whose shapes the program has (default: trials[0]); see `padding.program_groups`.
    padded: the fields ('<method>.<field>') in which trials may be smaller than `shape` (padded to it).
  """

  def __init__(self, config, trials: Sequence[Trial], data: dict, mesh: Optional[Mesh] = None,
               shape: Optional[Trial] = None, padded: Sequence[str] = ()):
    self.shape, self.padded, self.base_config = shape or trials[0], tuple(padded), config
    self.config = trial_config(config, self.shape, "tune")
    self.config.seed = config.seed  # the backbone (when not pretrained) is the sweep's, shared by all trials
    config_checks.validate_config(self.config)
    self.setup = model_setup.build(self.config)
    self.task_name = trials[0].task
    self.data = data
    self.batch_size = self.config.optim.batch_size
    self.mesh = mesh or make_trial_mesh()
    self.tx = optim.make_optimizer(self.config.optim, self.setup.labels)
    train_step = steps.make_train_step(self.setup.model, self.tx)
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
    self._init_opt = jax.jit(jax.vmap(self.tx.init), out_shardings=stacked)
    self.num_trainable = sum(int(np.prod(v.shape)) for v in self.setup.trainable.values())
    self.frozen = sharding.replicate(self.setup.frozen, self.mesh)
    self._opt_shapes = jax.eval_shape(self.tx.init, self.setup.trainable)  # what a continued state is resized to
    self._real_shapes: dict[tuple, tuple] = {self.shape.shape_key: (None, self.num_trainable, 1.0)}
    self.fitted: Optional[fit.Fit] = None  # --trial_batch=auto's choice for this group (`fit.choose`)

  def covers(self, trial: Trial) -> bool:
    """Whether this program trains `trial` (its shapes, or smaller ones in the padded fields)."""
    return padding.covers(self.shape, self.padded, trial)

  def _real_shape(self, trial: Trial) -> tuple:
    """`padding.real_shape` of `trial` in this program, once per real shape."""
    if trial.shape_key not in self._real_shapes:
      self._real_shapes[trial.shape_key] = padding.real_shape(self.base_config, trial, self.setup.trainable,
                                                              self.setup.methods[0])
    return self._real_shapes[trial.shape_key]

  def fit_trial_batch(self, cap: int) -> fit.Fit:
    """How many trials one train program holds (see `jpeft.sweep.fit`): the step compiled, not run, for one and
    two trials per device (each trial with its own batch, the larger case), capped by `cap`."""
    devices = self.mesh.size
    stacked = NamedSharding(self.mesh, P(TRIAL_AXIS))
    size = self.config.data.image_size
    hparam_names = ["lr", "wd", "merge_factor", *optim.schedule_steps(self.config.optim, 1)]
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    measured = []
    for trials in (devices, 2 * devices):
      shaped = lambda shape, dtype: jax.ShapeDtypeStruct((trials, *shape), dtype, sharding=stacked)
      trainable = {path: shaped(v.shape, v.dtype) for path, v in self.setup.trainable.items()}
      opt_state = fit.abstract_like(jax.eval_shape(jax.vmap(self.tx.init), trainable), stacked)
      batch = dict(image=shaped((self.batch_size, size, size, 3), np.float32),
                   label=shaped((self.batch_size,), np.int32))
      hparams = {name: shaped((), np.float32) for name in hparam_names}
      compiled = self._train.lower(trainable, opt_state, self.frozen, batch, shaped(key.shape, key.dtype),
                                   np.int32(0), hparams, 0).compile()
      measured.append(fit.program_bytes(compiled.memory_analysis()))
    resident = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in jax.tree.leaves(self.frozen))
    local = [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
    budget, source = fit.device_budget(local, resident)
    return fit.fit(*measured, budget, cap, devices, source)

  def _put(self, tree, stacked: bool):
    return jax.device_put(tree, NamedSharding(self.mesh, P(TRIAL_AXIS) if stacked else P()))

  def _init_trainable(self, trials: Sequence[Trial]) -> dict:
    """Stacked trainable parameters [T, ...]: fresh head and PEFT from each seed; what a checkpoint gave (the
    backbone, CLIP's projection, a zero-shot head) shared. A padded trial's padded parameters are initialised at
    its real shapes and zero-padded at the end of each axis."""
    # Once per distinct seed (trials of one seed share their initialisation) with the program
    # `model_setup.build` already compiled, so no chunk size compiles an init of its own.
    seed_key = lambda seed: jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    fresh = {s: partition.flatten(jax.device_get(self.setup.init_params(seed_key(s))))
             for s in sorted({t.seed for t in trials})}
    per_trial = []
    for trial in trials:
      init = self._real_shape(trial)[0]
      real = jax.device_get(init(seed_key(trial.seed))) if init is not None else {}
      per_trial.append({**fresh[trial.seed],
                        **{p: padding.zero_pad(v, fresh[trial.seed][p].shape) for p, v in real.items()}})
    per_seed = lambda path: self.setup.labels[path] in (base.HEAD, base.PEFT, base.PEFT_B) and path not in self.setup.loaded
    return {path: np.stack([flat[path] for flat in per_trial]) if per_seed(path)
            else np.broadcast_to(value, (len(trials), *np.shape(value)))
            for path, value in self.setup.trainable.items()}

  def _batches(self, train_data: splits.Split, seeds: Sequence[int], epoch: int):
    """Yields (batch, batch_axis): shared when all seeds are equal, else stacked per trial [T, B, ...]."""
    unique = sorted(set(seeds))
    streams = [train_data.train_epoch(self.batch_size, s, epoch) for s in unique]
    for per_seed in zip(*streams):
      if len(unique) == 1:
        yield per_seed[0], None
      else:
        by_seed = dict(zip(unique, per_seed))
        yield _stack([by_seed[s] for s in seeds]), 0

  def evaluate(self, eval_data: splits.Split, trainable, hparams, size: int) -> dict:
    """Per-trial accuracy and mean loss [T] (first `size` trials), logits [T, N, C] and labels [N]."""
    logits, labels, correct, loss = [], [], 0, 0.0
    for batch in eval_data.eval_batches(self.batch_size):
      out = sharding.to_host(self._eval(trainable, self.frozen, self._put(batch, False), hparams))
      logits.append(out["logits"][:size][:, batch["mask"]])
      labels.append(batch["label"][batch["mask"]])
      correct = correct + out["correct"][:size]
      loss = loss + out["loss"][:size]
    n = eval_data.size
    return dict(accuracy=np.asarray(correct) / n, loss=np.asarray(loss) / n, logits=np.concatenate(logits, 1),
                labels=np.concatenate(labels))

  def start(self, trials: Sequence[Trial], mode: str, states: Optional[Sequence["TrialState"]] = None) -> "Chunk":
    """Stacks `trials` (a chunk of this group, all of one tuning split) for training on `mode`'s train split.

    mode: 'tune' (train800 -> val200) or 'final' (train800val200 -> test); many-shot: the tuning split of the size
      -> its val, or the size's subset -> test (`splits.mode_splits`).
    states: where each trial stopped (`detach`, all at one epoch), to continue them; default: fresh trials.
    """
    _check_mode(mode)
    began = time.time()
    if len({t.tune_split for t in trials}) != 1:
      raise ValueError("A chunk trains on one tuning split; group trials by `tune_split` (see run_trials).")
    config = self.config.copy_and_resolve_references()
    config.data.tune_split = trials[0].tune_split if mode == "tune" else 0
    train_data, eval_data = splits.open_mode(config, self.setup.task, mode, self.data)
    steps_per_epoch = splits.count_steps_per_epoch(train_data, self.batch_size, self.task_name)
    filled = _pad(list(trials), self.mesh.size)
    seeds = [t.seed for t in filled]
    base_merge = float(self.config.merge_factor)
    # The schedule spans the full epochs whether or not a trial is stopped early (successive halving).
    schedule = optim.schedule_steps(self.config.optim, steps_per_epoch)
    real = [self._real_shape(t) for t in filled]
    hparams = self._put(dict(lr=np.float32([t.lr for t in filled]), wd=np.float32([t.wd for t in filled]),
                             merge_factor=np.float32([base_merge * t.merge_multiplier() * r[2]
                                                      for t, r in zip(filled, real)]),
                             **{k: np.full(len(filled), v, np.float32) for k, v in schedule.items()}),
                        True)
    if states is None:
      trainable = self._put(self._init_trainable(filled), True)
      opt_state = self._init_opt(trainable)
      epoch, step = 0, 0
      histories = [dict(evals=[], rung_evals=[], nonfinite=0, wall=time.time() - began) for _ in trials]
    else:
      if len({s.epoch for s in states}) != 1:
        raise ValueError("Trials continued in one chunk must have stopped at the same epoch.")
      # A state may come from another program of its method (a larger or smaller padded shape that covers
      # the trial): its padding is zero, so resizing it to this program's shapes changes nothing it computes.
      filled_states = _pad(list(states), self.mesh.size)
      trainable = self._put(_stack([padding.resize(s.trainable, self.setup.trainable) for s in filled_states]), True)
      opt_state = self._put(_stack([padding.resize(s.opt_state, self._opt_shapes) for s in filled_states]), True)
      epoch, step = states[0].epoch, states[0].step
      histories = [dict(evals=list(s.evals), rung_evals=list(s.rung_evals), nonfinite=s.nonfinite, wall=s.wall)
                   for s in states]
    train_keys = self._put(np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(s), 1)) for s in seeds]),
                           True)
    return Chunk(list(trials), mode, seeds, hparams, trainable, opt_state, train_keys, train_data, eval_data,
                 steps_per_epoch, epoch, step, histories, np.zeros(len(filled), np.int64))

  def advance(self, chunk: "Chunk", to_epoch: int, on_epoch: Optional[Callable[[int, int], None]] = None,
              stop: Optional[interrupts.StopRequest] = None, rung: bool = False) -> None:
    """Trains `chunk` on from its epoch to `to_epoch`, evaluating every `eval_every_epochs` and at the last epoch;
    `rung`: also evaluate at `to_epoch` into the trials' `rung_evals` (a cut of successive halving).

    on_epoch: called with (epochs done, epochs) after each epoch (progress for `jpeft.sweep --report`).
    stop: checked between steps (`interrupts.deferred`); once set, the chunk stops and raises
      `interrupts.Interrupted`. A chunk keeps no checkpoint: its trials are trained again by the next run.
    """
    start = time.time()
    size, epochs = len(chunk.trials), self.config.optim.epochs
    eval_split = chunk.eval_data.name
    for epoch in range(chunk.epoch, to_epoch):
      finite = []
      bar = tqdm.tqdm(total=chunk.steps_per_epoch, desc=f"{eval_split} epoch {epoch + 1}/{epochs} ({size} trials)",
                      leave=False, disable=chunk.steps_per_epoch < _BAR_MIN_STEPS)
      for batch, axis in self._batches(chunk.train_data, chunk.seeds, epoch):
        if stop:
          bar.close()
          raise interrupts.Interrupted(stop.signum, (
              f"the chunk of {size} {self.task_name}/{chunk.trials[0].method} trials ({chunk.mode}) stopped at step "
              f"{chunk.step} of {chunk.steps_per_epoch * epochs} and will be trained again (a chunk keeps no "
              "checkpoint)"))
        chunk.trainable, chunk.opt_state, metrics = self._train(
            chunk.trainable, chunk.opt_state, self.frozen, self._put(batch, axis == 0), chunk.train_keys,
            np.int32(chunk.step), chunk.hparams, axis)
        finite.append(metrics["finite"])
        chunk.step += 1
        bar.update()
      bar.close()
      chunk.nonfinite += len(finite) - np.sum(sharding.to_host(finite), axis=0)
      done = chunk.epoch = epoch + 1
      if done % self.config.eval_every_epochs == 0 or done == epochs:
        self._record_eval(chunk, "evals")
      if on_epoch is not None:
        on_epoch(done, epochs)
    if rung:
      if not (chunk.result and chunk.result_epoch == to_epoch):
        self._record_eval(chunk, None)
      self._append_eval(chunk, "rung_evals")
    for history in chunk.histories:
      history["wall"] += time.time() - start

  def _record_eval(self, chunk: "Chunk", into: Optional[str]) -> None:
    chunk.result = self.evaluate(chunk.eval_data, chunk.trainable, chunk.hparams, len(chunk.trials))
    chunk.result_epoch = chunk.epoch
    if into:
      self._append_eval(chunk, into)

  @staticmethod
  def _append_eval(chunk: "Chunk", into: str) -> None:
    for i, history in enumerate(chunk.histories):
      entry = dict(epoch=chunk.epoch, accuracy=float(chunk.result["accuracy"][i]), loss=float(chunk.result["loss"][i]))
      if into == "rung_evals":  # whether a trial had diverged by a rung decides whether it may go on
        entry["nonfinite_steps"] = int(history["nonfinite"] + chunk.nonfinite[i])
      history[into].append(entry)

  def detach(self, chunk: "Chunk") -> list["TrialState"]:
    """Each trial's state where `chunk` stopped, on the host, to continue it later in another chunk (`start`)."""
    trainable, opt_state = jax.device_get((chunk.trainable, chunk.opt_state))
    return [TrialState(jax.tree.map(lambda x, i=i: np.asarray(x[i]), trainable),
                       jax.tree.map(lambda x, i=i: np.asarray(x[i]), opt_state), chunk.epoch, chunk.step,
                       h["evals"], h["rung_evals"], int(h["nonfinite"] + chunk.nonfinite[i]), h["wall"])
            for i, h in enumerate(chunk.histories)]

  def rows(self, chunk: "Chunk") -> tuple[list[dict], dict]:
    """One result row per trial of `chunk` as it stands (identity, accuracy at the latest evaluation, evals,
    non-finite steps, ...; `rung_evals` where halving cut at rungs) and the latest evaluation's predictions:
    {'logits': [T, N, C], 'labels': [N]}."""
    stop_on_nan = self.config.optim.nan_policy == "stop"
    rows = []
    for i, (trial, h) in enumerate(zip(chunk.trials, chunk.histories)):
      history = h["evals"]
      latest = max(history + h["rung_evals"], key=lambda e: e["epoch"])
      best = max(history or h["rung_evals"], key=lambda e: e["accuracy"])
      nonfinite = int(h["nonfinite"] + chunk.nonfinite[i])
      rows.append(dict(trial.row(), stage=chunk.mode, eval_split=chunk.eval_data.name,
                       accuracy=latest["accuracy"], loss=latest["loss"],
                       best_accuracy=best["accuracy"], best_epoch=best["epoch"], evals=history,
                       nonfinite_steps=nonfinite, diverged=bool(stop_on_nan and nonfinite > 0),
                       trainable_params=self._real_shape(trial)[1], steps=chunk.step,
                       chunk_trials=len(chunk.trials), chunk_wall_s=h["wall"],
                       **padding.padded_to(self.shape, self.padded, trial),
                       **(dict(rung_evals=h["rung_evals"]) if h["rung_evals"] else {})))
    return rows, dict(logits=chunk.result["logits"], labels=chunk.result["labels"])

  def train(self, trials: Sequence[Trial], mode: str,
            on_epoch: Optional[Callable[[int, int], None]] = None,
            stop: Optional[interrupts.StopRequest] = None) -> tuple[list[dict], dict]:
    """Trains `trials` (a chunk of this group, all of one tuning split) together for the full epochs on `mode`'s
    train split and evaluates them (`start`, `advance`, `rows`)."""
    chunk = self.start(trials, mode)
    self.advance(chunk, self.config.optim.epochs, on_epoch, stop)
    return self.rows(chunk)


def program(config, shape: Trial, group: Sequence[Trial], data: dict, runners: dict, mesh: Optional[Mesh] = None,
            pad: bool = False) -> GroupRunner:
  """The runner that trains `group` (one of `padding.program_groups`, whose program has `shape`'s shapes), from the
  `runners` cache: with `pad`, any cached program that covers the group (the tune stage's, for the final retrain;
  a rung's, for the survivors of halving); else a new one, cached under `shape`'s key."""
  key = shape.shape_key
  if key not in runners:
    key = next((k for k, r in runners.items() if pad and all(map(r.covers, group))), key)
  if key not in runners:
    runners[key] = GroupRunner(config, group, data, mesh, shape, padding.paddable_fields(config, shape) if pad else ())
  return runners[key]


@dataclasses.dataclass
class TrialState:
  """One trial stopped at `epoch` (host arrays, unstacked): what `GroupRunner.start` continues it from."""
  trainable: dict
  opt_state: Any
  epoch: int
  step: int
  evals: list
  rung_evals: list
  nonfinite: int
  wall: float


@dataclasses.dataclass
class Chunk:
  """Trials of one shape group in training together: stacked device state [T, ...] (padded to the devices) and
  each real trial's history (`histories`: evals, rung_evals, non-finite steps and wall time before this chunk)."""
  trials: list
  mode: str
  seeds: list
  hparams: dict
  trainable: Any
  opt_state: Any
  train_keys: Any
  train_data: Any
  eval_data: Any
  steps_per_epoch: int
  epoch: int
  step: int
  histories: list
  nonfinite: np.ndarray  # non-finite steps in this chunk, per padded trial
  result: Optional[dict] = None  # the latest evaluation: accuracy, loss [T], logits [T, N, C], labels [N]
  result_epoch: int = -1


def run_trials(config, trials: Sequence[Trial], mode: str, trial_batch: int | str,
               on_chunk: Optional[Callable[[list[dict], dict], None]] = None,
               mesh: Optional[Mesh] = None, data: Optional[dict] = None,
               runners: Optional[dict] = None,
               on_epoch: Optional[Callable[[int, int], None]] = None,
               log: Callable[[str], None] = print, pad: bool = False) -> list[dict]:
  """Trains `trials` in shape groups, `trial_batch` trials per compiled call, and returns their rows.

  Args:
    config: base config; its task/method/lr/wd/peft/seed are replaced per trial.
    trials: any mix of shapes (grouped here by `Trial.shape_key`).
    mode: 'tune' or 'final'.
    trial_batch: trials trained together (bounded by memory); rounded up to a multiple of the devices. 'auto':
      as many as fit in the devices' memory, per shape group (`jpeft.sweep.fit`; the choice is logged).
    on_chunk: called with (rows, predictions {'logits': [T, N, C], 'labels': [N]}) after each chunk, e.g. to
      record them (resuming).
    mesh: trial mesh; default all devices.
    data: split cache (see `splits.open_mode`) to share loading across calls.
    runners: {shape key: GroupRunner} cache to share compiled programs across calls (the tune and final
      stages of one method); each runner holds its group's frozen backbone, so drop the cache when done.
    on_epoch: see `GroupRunner.train`.
    log: progress messages (the --trial_batch=auto choice).
    pad: trials differing only in paddable fields share one program at the largest values
      (`padding.program_groups`); a cached program that covers a group (the tune stage's, for the final retrain)
      trains it.
  """
  check_trial_batch(trial_batch)
  _check_mode(mode)  # before any runner is built
  data = {} if data is None else data
  runners = {} if runners is None else runners
  rows: list[dict] = []
  for shape, group in padding.program_groups(config, trials, pad):
    group_runner = program(config, shape, group, data, runners, mesh, pad)
    by_split: dict[int, list[Trial]] = {}  # a chunk shares its data: one tuning split per chunk
    for trial in group:
      by_split.setdefault(trial.tune_split, []).append(trial)
    chunk = trial_batch
    if trial_batch == fit.AUTO:
      chunk = fit.choose(group_runner, max(len(m) for m in by_split.values()), log)
    for members in by_split.values():
      for i in range(0, len(members), chunk):
        # A signal stops the chunk between steps, or, once it is trained, after its rows are recorded whole.
        # (Not in a multi-process sweep, whose processes could stop at different steps: there it stops at once.)
        with interrupts.deferred(enabled=jax.process_count() == 1) as stop:
          chunk_rows, predictions = group_runner.train(members[i:i + chunk], mode, on_epoch=on_epoch, stop=stop)
          if on_chunk is not None:
            on_chunk(chunk_rows, predictions)
        rows.extend(chunk_rows)
  return rows
