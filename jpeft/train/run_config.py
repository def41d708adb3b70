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
RUN_DEFINING = ("task", "mode", "seed", "method", "peft", "merge_factor", "model", "pretrained", "optim",
                "data.image_size", "data.normalization", "data.augment")


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
  """(leaf name, recorded value, current value) for every leaf whose values differ (None where absent)."""
  names = list(dict.fromkeys([*recorded, *current]))
  return [(name, recorded.get(name), current.get(name)) for name in names
          if recorded.get(name) != current.get(name)]


def check_same_run(config, saved_config_json: str, workdir: str) -> None:
  """Raises ConfigError naming the first run-defining field whose value differs from the checkpoint's config."""
  saved = defining_values(json.loads(saved_config_json), RUN_DEFINING)
  current = defining_values(json.loads(config.to_json()), RUN_DEFINING)
  mismatches = differences(saved, current)
  if mismatches:
    name, old, new = mismatches[0]
    raise ConfigError(
        f"The workdir '{workdir}' holds checkpoints of a run with {name} = {old!r}, but this "
        f"config has {name} = {new!r}. Resume with the same config, or pass a new --workdir for "
        "a different run.")
