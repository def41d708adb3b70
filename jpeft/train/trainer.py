"""One run end to end: build the model and method, load the backbone, train, evaluate, write results.

`run(config, workdir)` dispatches on `config.mode`:
  tune   train on train800, evaluate on val200
  final  train on train800val200, evaluate on test
  eval   evaluate the latest checkpoint in `workdir` on `config.eval_split` (default: the run's eval split)

The loop is a short sequence of periodic actions around the pure steps of `jpeft.train.steps`. Runs resume
from the newest checkpoint in `<workdir>/checkpoints`; data order and dropout keys are functions of
(seed, epoch) and (seed, step), so a resumed run ends bit-identical to an uninterrupted one.

Writes into workdir: metrics.jsonl, tb/ (TensorBoard), checkpoints/, result.json (or eval_<split>.json), and
logits_<split>.npy [N, C] f32 / labels_<split>.npy [N] i32 of the final evaluation. result.json holds
accuracy (last epoch), best_accuracy / best_epoch (over the evaluated epochs), evals (every evaluation),
trainable_params, total_params, steps, skipped_steps, wall_s, train_images_per_s (steady state: without the
first, compiling epoch of the process), pretrained (the backbone pointer) and devices.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from jpeft import checkpoints, peft
from jpeft.data import input_pipeline, tasks
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import checkpointing, optim, run_config, sharding, steps, writers
from jpeft.train.errors import ConfigError, NonFiniteLossError, WorkdirError

# mode -> (train split, eval split)
SPLITS = {"tune": ("train800", "val200"), "final": ("train800val200", "test")}
MODES = ("tune", "final", "eval")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# ---- config checks ---------------------------------------------------------------------------------------
def _require(ok: bool, field: str, value: Any, expected: str) -> None:
  if not ok:
    raise ConfigError(f"Config field '{field}' = {value!r} is not usable: expected {expected}. "
                      f"Set it on the command line, e.g. --config.{field}=<value>.")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field with an impossible value. Touches no data and no device."""
  o = config.optim
  _require(config.mode in MODES, "mode", config.mode, f"one of {MODES}")
  _require(isinstance(o.batch_size, int) and o.batch_size > 0, "optim.batch_size", o.batch_size,
           "a positive integer")
  _require(o.batch_size % jax.device_count() == 0, "optim.batch_size", o.batch_size,
           f"a multiple of the {jax.device_count()} devices the batch is split over")
  _require(o.epochs >= 1, "optim.epochs", o.epochs, "at least 1")
  _require(0 <= o.warmup_epochs <= o.epochs, "optim.warmup_epochs", o.warmup_epochs,
           f"between 0 and optim.epochs ({o.epochs})")
  _require(o.lr > 0 and math.isfinite(o.lr), "optim.lr", o.lr, "a positive finite number")
  _require(o.wd >= 0 and math.isfinite(o.wd), "optim.wd", o.wd, "a non-negative finite number")
  _require(0 <= o.b1 < 1, "optim.b1", o.b1, "in [0, 1)")
  _require(0 <= o.b2 < 1, "optim.b2", o.b2, "in [0, 1)")
  _require(o.eps > 0, "optim.eps", o.eps, "positive")
  _require(o.min_lr >= 0, "optim.min_lr", o.min_lr, "non-negative")
  _require(o.warmup_start_lr >= 0, "optim.warmup_start_lr", o.warmup_start_lr, "non-negative")
  _require(o.schedule_granularity in optim.GRANULARITIES, "optim.schedule_granularity", o.schedule_granularity,
           f"one of {optim.GRANULARITIES}")
  groups = ("head", "peft", "backbone")
  _require(set(o.lr_mult) == set(groups), "optim.lr_mult", dict(o.lr_mult), f"exactly the keys {groups}")
  for group in groups:
    _require(o.lr_mult[group] >= 0, f"optim.lr_mult.{group}", o.lr_mult[group], "non-negative")
  _require(o.nan_policy in ("stop", "skip"), "optim.nan_policy", o.nan_policy, "'stop' or 'skip'")
  _require(not (config.data.in_memory and config.data.augment), "data.augment", config.data.augment,
           "None with data.in_memory=True (in-memory splits are preprocessed once; set "
           "--config.data.in_memory=False to augment)")
  _require(config.model.dtype in _DTYPES, "model.dtype", config.model.dtype, f"one of {tuple(_DTYPES)}")
  _require(0 <= config.model.drop_path_rate < 1, "model.drop_path_rate", config.model.drop_path_rate,
           "in [0, 1)")
  for field in ("log_every_steps", "checkpoint_every_epochs", "eval_every_epochs", "checkpoint_max_to_keep"):
    _require(isinstance(config[field], int) and config[field] >= 1, field, config[field],
             "a positive integer")
  try:
    patch = vit.decode_variant(config.model.variant)["patch_size"]
    vit.style_kwargs(config.model.style)
  except ValueError as e:
    raise ConfigError(f"Config field 'model.variant' / 'model.style': {e}") from e
  _require(config.data.image_size % patch == 0, "data.image_size", config.data.image_size,
           f"a multiple of the patch size {patch} of model.variant '{config.model.variant}'")
  try:
    tasks.get_task(config.task)
  except ValueError as e:
    raise ConfigError(f"Config field 'task': {e}") from e
  try:
    peft.build_methods(config.method, config.peft)
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"Config field 'method' = {config.method!r} (with config.peft): {e}") from e


# ---- model and parameters --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run derives from its config before training.

  Attributes:
    task: the `jpeft.data.tasks.Task`.
    model: the linen ViT with the run's methods.
    methods: the PEFT methods.
    labels: flat path -> group ('head' | 'peft' | 'backbone' | 'frozen').
    trainable, frozen: flat {path: array} parameter dicts (host arrays).
    init_params: jitted PRNG key -> the model's freshly initialised (nested) parameters; compiled once here,
      so callers that initialise other seeds (the sweep) reuse the program.
  """
  task: Any
  model: Any
  methods: tuple
  labels: dict
  trainable: dict
  frozen: dict
  init_params: Callable


def _pretrained_name(config) -> Optional[str]:
  """The path if set, else the name; None or '' means random init (the from-scratch baseline)."""
  return config.pretrained.path or config.pretrained.name or None


def build(config) -> Setup:
  """Builds model and methods, initialises the parameters from `config.seed` and loads the backbone."""
  task = tasks.get_task(config.task)
  methods = peft.build_methods(config.method, config.peft)
  model = vit.create_model(config.model.variant, style=config.model.style, num_classes=task.num_classes,
                           methods=methods, drop_path_rate=config.model.drop_path_rate,
                           projection_dim=config.model.projection_dim, dtype=_DTYPES[config.model.dtype])
  size = config.data.image_size
  init_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)
  init_params = jax.jit(lambda k: model.init(k, jnp.zeros((1, size, size, 3)), train=False)["params"])
  params = init_params(init_key)
  name = _pretrained_name(config)
  if name:
    # Methods' parameters and the new head keep their initialisation; the backbone comes from the checkpoint.
    loaded = checkpoints.load_pretrained(name, target=params, style=config.model.style)
    params, _ = checkpoints.merge_into(params, loaded)
  labels = partition.label_params(params, methods)
  trainable, frozen = partition.split(params, labels)
  return Setup(task, model, tuple(methods), labels, trainable, frozen, init_params)


# ---- data ------------------------------------------------------------------------------------------------
def _data_kwargs(config) -> dict:
  d = config.data
  return dict(data_dir=d.data_dir, source=d.source, folder_root=d.folder_root, image_size=d.image_size,
              normalization=d.normalization)


def load_split(config, task, split: str) -> dict[str, np.ndarray]:
  """{'image': f32 [N, H, W, 3], 'label': i32 [N]} of a whole split, in memory."""
  return input_pipeline.load_split_arrays(task, split, **_data_kwargs(config))


def train_batches(arrays: dict, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
  """The epoch's shuffled batches (drop_last); the order depends only on (seed, epoch), so resuming at an
  epoch boundary replays exactly the batches an uninterrupted run sees."""
  order = np.random.default_rng((seed, epoch)).permutation(len(arrays["label"]))
  for i in range(len(order) // batch_size):
    index = np.sort(order[i * batch_size:(i + 1) * batch_size])  # sorted: faster gather, same batch set
    yield {k: v[index] for k, v in arrays.items()}


def pad_batches(batches: Iterable[dict], batch_size: int) -> Iterator[dict]:
  """Pads each batch to `batch_size` rows and adds 'mask' (bool [batch_size], False on padding), so every
  eval batch has one shape (one compilation) that splits evenly over the devices."""
  for batch in batches:
    real = len(batch["label"])
    padded = {k: np.concatenate([v, np.zeros((batch_size - real, *v.shape[1:]), v.dtype)])
              for k, v in batch.items()}
    padded["mask"] = np.arange(batch_size) < real
    yield padded


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of the run's data, in memory (`config.data.in_memory`, VTAB-1K) or streamed (many-shot).

  Attributes:
    size: number of examples.
    arrays: the whole split when in memory, else None.
    config, task, name: what to stream from otherwise.
  """
  size: int
  arrays: Optional[dict]
  config: Any
  task: Any
  name: str

  @classmethod
  def open(cls, config, task, name: str) -> "Split":
    if config.data.in_memory:
      arrays = load_split(config, task, name)
      return cls(len(arrays["label"]), arrays, config, task, name)
    d = config.data
    size = input_pipeline.num_examples(task, name, source=d.source, data_dir=d.data_dir,
                                       folder_root=d.folder_root)
    return cls(size, None, config, task, name)

  def _stream(self, batch_size: int, train: bool, seed: int) -> Iterator[dict]:
    ds = input_pipeline.get_dataset(self.task, self.name, batch_size=batch_size, train=train, seed=seed,
                                    num_epochs=1, drop_remainder=train,
                                    augment=self.config.data.augment if train else None,
                                    **_data_kwargs(self.config))
    return iter(ds.as_numpy_iterator())

  def train_epoch(self, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
    """Shuffled full batches of one epoch, a function of (seed, epoch) only."""
    if self.arrays is not None:
      return train_batches(self.arrays, batch_size, seed, epoch)
    # The pipeline's shuffling and augmentation are deterministic given its seed.
    return self._stream(batch_size, True, int(np.random.default_rng((seed, epoch)).integers(2**31)))

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    """Every example once, in order, padded (see `pad_batches`)."""
    if self.arrays is not None:
      n = self.size
      batches = ({k: v[i:i + batch_size] for k, v in self.arrays.items()} for i in range(0, n, batch_size))
    else:
      batches = self._stream(batch_size, False, 0)
    return pad_batches(batches, batch_size)


def count_steps_per_epoch(train_data: "Split", batch_size: int, task_name: str) -> int:
  """Full batches per epoch of `train_data` (drop_last); ConfigError naming the batch size if there are none."""
  steps = train_data.size // batch_size
  if steps == 0:
    raise ConfigError(f"Config field 'optim.batch_size' = {batch_size} is larger than the {train_data.name} "
                      f"split of '{task_name}' ({train_data.size} examples), so drop_last leaves no "
                      "batch: lower --config.optim.batch_size.")
  return steps


# ---- evaluation ------------------------------------------------------------------------------------------
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


def _jit_eval_step(model, mesh):
  # Replicated outputs: every process can read all logits, also when the batch spans several hosts.
  return jax.jit(steps.make_eval_step(model), out_shardings=sharding.replicated(mesh))


# ---- the run ---------------------------------------------------------------------------------------------
def _check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    # One probe per process: the processes of a multi-host job check the same workdir at the same time.
    probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"Cannot write to the workdir '{workdir}': {e}. Pass a writable directory with "
                       "--workdir=<path> (it is created if missing).") from e


def _write_json(path: str, obj: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)  # atomic: a crash never leaves a half-written result


def _save_predictions(workdir: str, split: str, result: dict) -> None:
  np.save(os.path.join(workdir, f"logits_{split}.npy"), result["logits"].astype(np.float32))
  np.save(os.path.join(workdir, f"labels_{split}.npy"), result["labels"].astype(np.int32))


def _meta(config, epoch: int, evals: list, skipped: int) -> dict:
  """What a checkpoint needs besides arrays: where the frozen backbone comes from, and the run's history."""
  return dict(epoch=epoch, evals=evals, skipped=skipped, pretrained=_pretrained_name(config), method=config.method,
              variant=config.model.variant, style=config.model.style, seed=config.seed, mode=config.mode,
              task=config.task, config=config.to_json())


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs `config.mode` in `workdir` and returns the result dict also written as JSON."""
  validate_config(config)
  _check_workdir(workdir)
  if config.mode == "eval":
    return evaluate_checkpoint(config, workdir)
  return train_and_evaluate(config, workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains on the mode's train split, evaluating every `eval_every_epochs` and at the end."""
  start_time = time.time()
  lead = jax.process_index() == 0
  train_split, eval_split = SPLITS[config.mode]
  setup = build(config)
  train_data = Split.open(config, setup.task, train_split)
  eval_data = Split.open(config, setup.task, eval_split)
  batch_size = config.optim.batch_size
  steps_per_epoch = count_steps_per_epoch(train_data, batch_size, config.task)
  total_steps = steps_per_epoch * config.optim.epochs

  mesh = sharding.make_mesh()
  tx = optim.make_optimizer(config.optim, setup.labels)
  train_step = jax.jit(steps.make_train_step(setup.model, tx), donate_argnums=(0, 1))
  eval_step = _jit_eval_step(setup.model, mesh)
  hparams = sharding.replicate(steps.hparams_from_config(config, steps_per_epoch), mesh)
  frozen = sharding.replicate(setup.frozen, mesh)
  trainable = sharding.replicate(setup.trainable, mesh)
  opt_state = sharding.replicate(tx.init(setup.trainable), mesh)
  # Replicated like the state it is saved with: a multi-process checkpoint cannot hold a one-device array.
  train_key = sharding.replicate(jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), mesh)

  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_max_to_keep)
  writer = writers.MetricWriter(workdir) if lead else None
  step, evals, skipped = 0, [], 0
  latest = ckpt.latest_step()
  if latest is not None:
    run_config.check_same_run(config, ckpt.read_meta(latest)["config"], workdir)
    like = dict(trainable=trainable, opt_state=opt_state, step=0, rng=jax.random.key_data(train_key))
    state, meta = ckpt.restore(latest, like)
    trainable, opt_state, step = state["trainable"], state["opt_state"], int(state["step"])
    train_key, evals, skipped = jnp.asarray(state["rng"]), meta["evals"], meta["skipped"]
    if writer:
      writer.write(step, {}, event="resumed", epoch=meta["epoch"])

  num_trainable = sum(int(np.prod(v.shape)) for v in setup.trainable.values())
  num_total = num_trainable + sum(int(np.prod(v.shape)) for v in setup.frozen.values())
  bar = tqdm.tqdm(total=total_steps, initial=step, disable=not lead, desc=f"{config.task}/{config.method}")
  pending, timed_images, timed_seconds = [], 0, 0.0
  last = None
  try:
    first_epoch = step // steps_per_epoch
    for epoch in range(first_epoch, config.optim.epochs):
      epoch_start = time.time()
      for batch in train_data.train_epoch(batch_size, config.seed, epoch):
        rng = jax.random.fold_in(train_key, step)
        trainable, opt_state, metrics = train_step(trainable, opt_state, frozen,
                                                   sharding.shard_batch(batch, mesh), rng, hparams)
        pending.append(metrics)
        step += 1
        if step % config.log_every_steps == 0 or step % steps_per_epoch == 0:
          skipped += _flush(pending, step, epoch, config, writer, bar, batch_size, time.time() - epoch_start,
                            step - epoch * steps_per_epoch)
          pending = []
      if epoch != first_epoch:  # the first epoch of a process also compiles: not steady state
        timed_seconds += time.time() - epoch_start
        timed_images += steps_per_epoch * batch_size
      done = epoch + 1
      if done % config.eval_every_epochs == 0 or done == config.optim.epochs:
        last = evaluate(eval_step, trainable, frozen, eval_data, hparams, batch_size, mesh)
        evals.append(dict(epoch=done, accuracy=last["accuracy"], loss=last["loss"]))
        if writer:
          writer.write(step, {f"{eval_split}/accuracy": last["accuracy"], f"{eval_split}/loss": last["loss"]},
                       epoch=done)
      if done % config.checkpoint_every_epochs == 0 or done == config.optim.epochs:
        ckpt.save(step, dict(trainable=trainable, opt_state=opt_state, step=step,
                             rng=jax.random.key_data(train_key)), _meta(config, done, evals, skipped))
    ckpt.wait()
  finally:
    bar.close()
    ckpt.close()
    if writer:
      writer.close()

  if last is None:  # resumed from the final checkpoint: only the evaluation is redone
    last = evaluate(eval_step, trainable, frozen, eval_data, hparams, batch_size, mesh)
  best = max(evals, key=lambda e: e["accuracy"])
  result = dict(task=config.task, method=config.method, mode=config.mode, eval_split=eval_split,
                accuracy=last["accuracy"], last_epoch=evals[-1]["epoch"], best_accuracy=best["accuracy"],
                best_epoch=best["epoch"], evals=evals, trainable_params=num_trainable, total_params=num_total,
                steps=step, skipped_steps=skipped, wall_s=time.time() - start_time,
                train_images_per_s=timed_images / timed_seconds if timed_seconds else None,
                pretrained=_pretrained_name(config), devices=jax.device_count())
  if lead:
    try:
      _save_predictions(workdir, eval_split, last)
      if config.save_merged:
        _save_merged(workdir, setup, trainable, frozen, config.merge_factor)
      _write_json(os.path.join(workdir, "result.json"), result)
    except OSError as e:
      raise WorkdirError(f"Training finished but the results could not be written to '{workdir}': {e}. The "
                         "final checkpoint is saved; free space (or fix permissions) and run the same command "
                         "again: it restores the checkpoint and only redoes the evaluation.") from e
  return result


def _flush(pending: list, step: int, epoch: int, config, writer, bar, batch_size: int, seconds: float,
           steps_in_epoch: int) -> int:
  """Fetches the pending step metrics, enforces the NaN policy, logs their mean. Returns #skipped steps."""
  fetched = jax.device_get(pending)
  finite = [bool(m["finite"]) for m in fetched]
  if not all(finite):
    first_bad = step - len(finite) + finite.index(False) + 1
    if config.optim.nan_policy == "stop":
      raise NonFiniteLossError(
          f"The loss or gradients became NaN/inf at step {first_bad} (epoch {epoch + 1}) of the run "
          f"(optim.lr = {config.optim.lr}, optim.wd = {config.optim.wd}). The run stopped; the last checkpoint "
          "in the workdir is the last good state and was not overwritten. Lower --config.optim.lr, or set "
          "--config.optim.nan_policy=skip to skip such batches as the study's code did.")
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


def _save_merged(workdir: str, setup: Setup, trainable, frozen, merge_factor: float) -> None:
  """Writes the full model with re-parameterisable methods folded in (at the run's merge_factor) to
  `<workdir>/merged`."""
  merged = peft.merge(partition.combine(jax.device_get(trainable), jax.device_get(frozen)), setup.methods,
                      merge_factor=merge_factor)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(os.path.join(workdir, "merged")), merged, force=True)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the newest checkpoint in `workdir` on `config.eval_split` (default: the mode it was trained
  in's eval split); writes eval_<split>.json and the logits / labels."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint_max_to_keep)
  latest = ckpt.latest_step()
  if latest is None:
    ckpt.close()
    raise ConfigError(f"mode 'eval' needs a checkpoint, but '{os.path.join(workdir, 'checkpoints')}' has none. "
                      "Pass the --workdir of a finished training run (same --config), or train first with "
                      "--config.mode=tune or final.")
  setup = build(config)
  mesh = sharding.make_mesh()
  tx = optim.make_optimizer(config.optim, setup.labels)
  like = dict(trainable=sharding.replicate(setup.trainable, mesh),
              opt_state=sharding.replicate(tx.init(setup.trainable), mesh), step=0,
              rng=sharding.replicate(jax.random.key_data(jax.random.PRNGKey(0)), mesh))
  state, meta = ckpt.restore(latest, like)
  ckpt.close()
  split = config.eval_split or SPLITS[meta["mode"]][1]
  result = evaluate(_jit_eval_step(setup.model, mesh), state["trainable"],
                    sharding.replicate(setup.frozen, mesh), Split.open(config, setup.task, split),
                    sharding.replicate(steps.hparams_from_config(config, 1), mesh), config.optim.batch_size, mesh)
  out = dict(task=config.task, method=config.method, split=split, accuracy=result["accuracy"],
             loss=result["loss"], step=int(state["step"]), epoch=meta["epoch"], workdir=os.path.abspath(workdir))
  if jax.process_index() == 0:
    _save_predictions(workdir, split, result)
    _write_json(os.path.join(workdir, f"eval_{split}.json"), out)
  return out
