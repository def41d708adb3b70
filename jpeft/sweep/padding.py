"""Padded shapes (the sweep's `grid.pad_shapes`): which trials share one padded program, and their parameters.

Trials that differ only in fields their method lists as `paddable` (LoRA's rank, ...) share one program built at
the group's largest values (`program_groups`). Each trial's parameters are initialised at its real shape
(`real_shape`) and zero-padded (`zero_pad`; `Method.paddable` says why that trains exactly as the unpadded
trial), its output scale rides on the traced merge_factor (`Method.pad_multiplier`), and its row keeps its real
hyperparameters and parameter count and says what it was padded to (`padded_to`). A state continued in another
program of its method is cut or zero-padded to that program's shapes (`resize`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jpeft import peft
from jpeft.peft import base, partition
from jpeft.sweep.grid import Trial, trial_config
from jpeft.train import model_setup


def paddable_fields(config, trial: Trial) -> tuple[str, ...]:
  """'<method>.<field>' of `trial`'s grid fields that its method (with the base config's settings) pads exactly;
  none for a '+' composition, whose merge_factor would also rescale the other methods."""
  if "+" in trial.method:
    return ()
  (method,) = peft.build_methods(trial.method, trial_config(config, trial, "tune", fold=False).peft)
  names = {f"{trial.method}.{field}" for field in method.paddable()}
  return tuple(name for name, _ in trial.hparams if name in names)


def program_groups(config, trials: Sequence[Trial], pad: bool) -> list[tuple[Trial, list[Trial]]]:
  """[(shape, members)]: the trials that share one program, and the trial whose shapes that program has (a
  member, or with `pad` the members' common setting with each paddable field at its largest value).
  Groups and members in first-seen order."""
  groups: dict[tuple, list[Trial]] = {}
  for trial in trials:
    fields = paddable_fields(config, trial) if pad else ()
    key = (trial.shape_key, fields) if not fields else (
        (trial.task, trial.method, tuple(hp for hp in trial.shape_key[2] if hp[0] not in fields)), fields)
    groups.setdefault(key, []).append(trial)
  out = []
  for (_, fields), members in groups.items():
    largest = {name: max(dict(t.hparams)[name] for t in members) for name in fields}
    shape = dataclasses.replace(members[0], hparams=tuple((k, largest.get(k, v)) for k, v in members[0].hparams))
    out.append((shape, members))
  return out


def covers(shape: Trial, fields: Sequence[str], trial: Trial) -> bool:
  """Whether a program of `shape`, padding `fields`, can train `trial`."""
  mine, theirs = dict(shape.shape_key[2]), dict(trial.shape_key[2])
  return (shape.shape_key[:2] == trial.shape_key[:2] and mine.keys() == theirs.keys() and
          all(mine[k] >= theirs[k] if k in fields else mine[k] == theirs[k] for k in mine))


def real_shape(config, trial: Trial, trainable: dict,
               program_method: base.Method) -> tuple[Optional[Callable], int, float]:
  """(init, trainable parameter count, merge_factor multiplier) of `trial` at its real shapes, in a program whose
  trainable parameters are `trainable` ({path: array}) and whose method is `program_method`.

  init: jitted PRNG key -> {path: array} of the parameters whose shapes padding changes, as the unpadded model
  initialises them (only the initialisers run: the forward pass is pruned).
  """
  config = trial_config(config, trial, "tune")
  _, methods, model, _ = model_setup.build_model(config)
  size = config.data.image_size
  init_all = lambda k: partition.flatten(model.init(k, jnp.zeros((1, size, size, 3)), train=False)["params"])
  shapes = jax.eval_shape(init_all, jax.random.PRNGKey(0))
  changed = [p for p, v in trainable.items() if shapes[p].shape != np.shape(v)]
  init = jax.jit(lambda k: {p: init_all(k)[p] for p in changed})
  count = sum(int(np.prod(shapes[p].shape)) for p in trainable)
  return init, count, methods[0].pad_multiplier(program_method)


def zero_pad(value: np.ndarray, shape: tuple) -> np.ndarray:
  """`value` with zeros appended at the end of each axis up to `shape` (>= value's shape on every axis)."""
  value = np.asarray(value)
  out = np.zeros(shape, value.dtype)
  out[tuple(slice(0, n) for n in value.shape)] = value
  return out


def resize(tree, like):
  """`tree` cut or zero-padded at the end of each axis to the shapes of `like` (same structure, arrays or
  ShapeDtypeStructs)."""
  def resize_one(value, target):
    value = np.asarray(value)[tuple(slice(0, n) for n in target.shape)]
    return zero_pad(value, target.shape)
  return jax.tree.map(resize_one, tree, like)


def padded_to(shape: Trial, fields: Sequence[str], trial: Trial) -> dict:
  """{'padded_to': {field: value}} when `trial` trained in a program of `shape` larger than its own shapes (in
  the padded `fields`), else {}."""
  if trial.shape_key == shape.shape_key:
    return {}
  return dict(padded_to={k: v for k, v in shape.hparams if k in fields and dict(trial.hparams)[k] != v})
