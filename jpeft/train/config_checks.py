"""What a run's config must satisfy: possible values (`validate_config`). Whether it is the same run as the
checkpoints it resumes or evaluates is `jpeft.train.run_config.check_same_run`."""
from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections

from jpeft import peft
from jpeft.data import manyshot, preprocess, randaugment, tasks
from jpeft.models import vit
from jpeft.train import early_stopping, optim
from jpeft.train.errors import ConfigError
from jpeft.train import model_setup
from jpeft.train.model_setup import DTYPES

# mode -> (train split, eval split)
SPLITS = {"tune": ("train800", "val200"), "final": ("train800val200", "test")}
MODES = ("tune", "final", "eval")


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
  param_axis = config.sharding.param_axis_size
  _require(isinstance(param_axis, int) and param_axis >= 1 and jax.device_count() % param_axis == 0,
           "sharding.param_axis_size", param_axis,
           f"a positive divisor of the {jax.device_count()} devices (1 = parameters replicated)")
  _require(isinstance(config.sharding.min_shard_size, int) and config.sharding.min_shard_size >= 0,
           "sharding.min_shard_size", config.sharding.min_shard_size, "a non-negative integer (elements)")
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
  groups = ("head", "peft", "peft_b", "backbone")
  _require(set(o.lr_mult) == set(groups), "optim.lr_mult", dict(o.lr_mult), f"exactly the keys {groups}")
  for group in groups:
    _require(o.lr_mult[group] >= 0, f"optim.lr_mult.{group}", o.lr_mult[group], "non-negative")
  _require(o.schedule_granularity in optim.GRANULARITIES, "optim.schedule_granularity", o.schedule_granularity,
           f"one of {optim.GRANULARITIES}")
  _require(o.nan_policy in ("stop", "skip"), "optim.nan_policy", o.nan_policy, "'stop' or 'skip'")
  _require(0 <= o.max_skipped_fraction <= 1, "optim.max_skipped_fraction", o.max_skipped_fraction,
           "in [0, 1] (the fraction of steps optim.nan_policy=skip may skip before the run fails)")
  _require(not (config.data.in_memory and config.data.augment), "data.augment", config.data.augment,
           "None with data.in_memory=True (in-memory splits are preprocessed once; set "
           "--config.data.in_memory=False to augment)")
  _require(config.head_init != "zeroshot" or bool(config.model.projection_dim), "model.projection_dim",
           config.model.projection_dim, "the CLIP projection width (512 for ViT-B/16) with head_init='zeroshot'")
  _require(config.model.dtype in DTYPES, "model.dtype", config.model.dtype, f"one of {tuple(DTYPES)}")
  attention = config.model.get("attention", "einsum")
  _require(attention in vit.ATTENTION_IMPLEMENTATIONS, "model.attention", attention,
           f"one of {vit.ATTENTION_IMPLEMENTATIONS}")
  _require(attention != "cudnn" or (jax.default_backend() == "gpu" and config.model.dtype == "bfloat16"),
           "model.attention", attention, "'einsum' or 'xla' here: 'cudnn' runs on NVIDIA GPUs with "
           f"model.dtype='bfloat16' (this is a {jax.default_backend()} backend, model.dtype='{config.model.dtype}')")
  _require(0 <= config.model.drop_path_rate < 1, "model.drop_path_rate", config.model.drop_path_rate,
           "in [0, 1)")
  for field in ("log_every_steps", "checkpoint_every_epochs", "eval_every_epochs", "checkpoint_max_to_keep"):
    _require(isinstance(config[field], int) and config[field] >= 1, field, config[field],
             "a positive integer")
  _require(isinstance(config.init_from.workdir, str), "init_from.workdir", config.init_from.workdir,
           "the workdir of a trained run, or '' to start from the pretrained backbone")
  _require(isinstance(config.init_from.get("peft", ""), str), "init_from.peft", config.init_from.get("peft"),
           "a PyTorch PEFT adapter directory, or ''")
  for field in ("head", "optimizer", "allow_unfinished"):
    _require(isinstance(config.init_from[field], bool), f"init_from.{field}", config.init_from[field],
             "True or False")
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
  _require(config.head_init in model_setup.HEAD_INITS, "head_init", config.head_init,
           f"one of {model_setup.HEAD_INITS}")
  for name in config.shift_tasks:
    try:
      shifted = tasks.get_task(name)
    except ValueError as e:
      raise ConfigError(f"Config field 'shift_tasks': {e}") from e
    num_classes = tasks.get_task(config.task).num_classes
    _require("test" in shifted.splits and shifted.num_classes == num_classes, "shift_tasks",
             tuple(config.shift_tasks),
             f"tasks with a 'test' split in the label space of task '{config.task}' ({num_classes} classes); "
             f"'{name}' has {shifted.num_classes} classes and splits {sorted(shifted.splits)}")
  if config.data.subset:
    try:
      manyshot.get_many_shot(config.task).tune(manyshot.get_many_shot(config.task).size(config.data.subset),
                                                config.data.tune_split)
    except ValueError as e:
      raise ConfigError(f"Config field 'data.subset' / 'data.tune_split': {e}") from e
  _check_augmentation(config.data)
  _check_early_stopping(config)
  try:
    peft.build_methods(config.method, config.peft)
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"Config field 'method' = {config.method!r} (with config.peft): {e}") from e


def _check_augmentation(d) -> None:
  _require(d.eval_resize in preprocess.EVAL_RESIZES, "data.eval_resize", d.eval_resize,
           f"one of {preprocess.EVAL_RESIZES}")
  _require(d.color_jitter >= 0, "data.color_jitter", d.color_jitter, "a non-negative strength (0 = off)")
  _require(0 <= d.random_erasing <= 1, "data.random_erasing", d.random_erasing, "a probability in [0, 1] (0 = off)")
  for field in ("color_jitter", "random_erasing"):
    _require(not d[field] or bool(d.augment), f"data.{field}", d[field],
             "0 when data.augment is None: it augments training images, set --config.data.augment (e.g. "
             "'rrc+hflip') and --config.data.in_memory=False")
  try:
    randaugment.parse_policy(d.randaugment)
  except ValueError as e:
    raise ConfigError(f"Config field 'data.randaugment': {e}") from e


def _check_early_stopping(config) -> None:
  es = config.early_stopping
  _require(isinstance(es.patience, int) and es.patience >= 0, "early_stopping.patience", es.patience,
           "a non-negative integer (evaluations without improvement before stopping; 0 = off)")
  _require(es.metric in early_stopping.METRICS, "early_stopping.metric", es.metric,
           f"one of {tuple(early_stopping.METRICS)}")
  if not es.split:
    return
  _require(es.patience > 0, "early_stopping.split", es.split, "'' while early_stopping.patience is 0 (off)")
  splits = tasks.get_task(config.task).splits
  _require(es.split in splits, "early_stopping.split", es.split,
           f"'' (the mode's eval split) or a split of task '{config.task}': {sorted(splits)}")
  _require(not (config.mode == "final" and es.split == "test"), "early_stopping.split", es.split,
           "a split held out of training other than the test split the final run reports (selecting on it "
           "would report an optimistic test accuracy), e.g. 'val' on imagenet")
