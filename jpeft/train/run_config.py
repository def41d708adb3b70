"""Which config fields define a run's result, and the comparison that keeps a resumed run from mixing configs.

A single run (`jpeft.train.trainer`) records its config in each checkpoint and a sweep (`jpeft.sweep.trial_log`)
in its workdir; continuing either under other values of these fields would report one config's training as
another's. Both compare with `differences` over the flat leaves of `defining_values`.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from jpeft.train.errors import ConfigError

# Fields that define what a checkpoint holds and how training continues; resuming with another value would
# silently mix two runs. Logging, checkpoint and eval intervals and data locations may change.
RUN_DEFINING = ("task", "mode", "seed", "method", "peft", "merge_factor", "head_init", "zeroshot", "model",
                "pretrained", "init_from", "optim", "data.image_size", "data.normalization", "data.augment",
                "data.augment_final_only", "data.center_crop", "data.skip_bad_images", "data.subset", "data.tune_split",
                "data.subset_index_file", "data.eval_resize", "data.randaugment", "data.color_jitter", "data.random_erasing", "early_stopping")
# Run-defining fields that may change on resume: the bar for too many skipped steps changes no arithmetic, so
# a run that failed it can be accepted by raising it and starting the same command again; rematerialisation
# trades memory for time and computes the same numbers; the attention implementation computes the same math in
# another summation order (as another device would); a resumed run never reads its init_from source again.
RESUME_MAY_DIFFER = ("optim.max_skipped_fraction", "model.remat", "model.attention",
                     "init_from.allow_unfinished")
# ... and at mode 'eval', which trains nothing: the mode itself, the batch size (evaluation is per example),
# the training augmentation, and leaving out the eval split's bad images (recorded in eval_<split>.json).
EVAL_MAY_DIFFER = RESUME_MAY_DIFFER + ("mode", "optim.batch_size", "data.augment", "data.randaugment",
                                      "data.color_jitter", "data.random_erasing", "data.skip_bad_images")
# Fields added after runs were recorded without them, with the value that computes what those runs computed: a
# recorded config that lacks the field matches this value (so upgrading jpeft does not strand a resumable run).
ADDED_FIELDS = {"optim.schedule_granularity": "step", "model.remat": False, "model.attention": "einsum",
                "head_init": "random",
                "zeroshot.checkpoint": None, "zeroshot.classnames": "imagenet", "zeroshot.templates": "openai_imagenet",
                "init_from.workdir": "", "init_from.head": True, "init_from.optimizer": False,
                "init_from.allow_unfinished": False, "init_from.peft": "",
                "data.augment_final_only": False, "data.center_crop": False, "data.skip_bad_images": False,
                "data.subset": "", "data.tune_split": 0,
                "data.subset_index_file": None, "data.eval_resize": "short_side",
                "data.randaugment": "rand-m9-mstd0.5-inc1", "data.color_jitter": 0.0, "data.random_erasing": 0.0,
                "early_stopping.patience": 0, "early_stopping.metric": "accuracy", "early_stopping.split": "",
                "optim.lr_mult.peft_b": 1.0, "peft.lora.scaling": "study", "peft.lora.alpha": 8.0,
                "peft.lora.init": "study", "peft.adapter.init": "study", "peft.adapter.nonlinearity": "relu",
                "peft.adapter.drop_path": 0.0}


def leaves(tree: Any, prefix: str) -> dict[str, Any]:
  """Nested JSON dict -> {'<prefix>.a.b': leaf}; a non-dict is the single leaf `prefix`."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}.{key}").items()}


def defining_values(config_json: Mapping, fields: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, Any]:
  """The leaves of `fields` in a config's JSON dict, e.g. {'optim.epochs': 100, 'optim.lr': 0.001, ...}.

  Args:
    config_json: `json.loads(config.to_json())`, or a recorded copy of it.
    fields: dotted field names; a sub-config contributes every leaf under it. Missing fields read as None.
    exclude: leaves (or sub-configs) under `fields` to leave out, e.g. ('optim.lr',).
  Returns:
    {dotted leaf name: JSON value}, in `fields` order and sorted within each field.
  """
  out = {}
  for field in fields:
    node = config_json
    for key in field.split("."):
      node = node.get(key) if isinstance(node, Mapping) else None
    for name, value in sorted(leaves(node, field).items()):
      if not any(name == e or name.startswith(e + ".") for e in exclude):
        out[name] = value
  return out


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """(leaf name, recorded value, current value) for every leaf whose values differ (None where absent; a leaf of
  `ADDED_FIELDS` absent from `recorded` reads as its listed value)."""
  names = list(dict.fromkeys([*recorded, *current]))
  recorded = {**{k: v for k, v in ADDED_FIELDS.items() if k not in recorded}, **recorded}
  return [(name, recorded.get(name), current.get(name)) for name in names
          if recorded.get(name) != current.get(name)]


def check_same_run(config, saved_config_json: str, workdir: str,
                   may_differ: Sequence[str] = RESUME_MAY_DIFFER) -> None:
  """Raises one ConfigError naming every run-defining field (`RUN_DEFINING`, except `may_differ` and what is
  below them) whose value in `config` differs from the checkpoint's saved config."""
  saved = defining_values(json.loads(saved_config_json), RUN_DEFINING, exclude=may_differ)
  current = defining_values(json.loads(config.to_json()), RUN_DEFINING, exclude=may_differ)
  differ = differences(saved, current)
  if differ:
    evaluating = config.mode == "eval"
    raise ConfigError(
        f"The workdir '{workdir}' holds checkpoints of a run with "
        f"{', '.join(f'{name} = {old!r}' for name, old, _ in differ)}, but this config has "
        f"{', '.join(f'{name} = {new!r}' for name, _, new in differ)}. "
        + ("Evaluate with the config the run was trained with (only the mode, eval_split, data locations and "
           "batch size may differ), or pass the --workdir of the run this config describes."
           if evaluating else "Resume with the same config, or pass a new --workdir for a different run."))
