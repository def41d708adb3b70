"""The study's search grid: lr x wd x the method's own grid (x seeds), and which trials can share a program.

A `Trial` is one training: a task, a method string, base lr and wd, the method's grid values and a seed.
Trials whose method hyperparameters give the same parameter shapes form a shape group and train together in
one vmapped program (`jpeft.sweep.runner`); what differs inside a group is traced: lr, wd, seed, and a method's
output multiplier `scale` where that can be folded into the traced `merge_factor` (see `FOLDABLE`).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

import ml_collections

from jpeft import peft

# The spec's search space (shared/spec/vtab.md): lr in {1e-3, 1e-2} x wd in {1e-4, 1e-3}, one seed (42).
STUDY_LR = (1e-3, 1e-2)
STUDY_WD = (1e-4, 1e-3)
STUDY_SEEDS = (42,)

# Method fields that only multiply the method's module output by a constant: every method that has a `scale`
# field computes `merge_factor * scale * M(.)` and uses `scale` nowhere else (adapters.py, fact.py), so a trial
# at scale s equals the method built at scale 1 run with merge_factor * s. This holds only when the method is
# alone: with 'a+b' the merge_factor would also rescale the other method.
FOLDABLE = ("scale",)


class GridError(ValueError):
  """A grid value or override that cannot describe a sweep."""


@dataclasses.dataclass(frozen=True)
class Trial:
  """One training of the sweep.

  Attributes:
    task: registered task name.
    method: method string ('lora', 'lora+bitfit').
    lr, wd: base learning rate and weight decay.
    hparams: ((field, value), ...) sorted, the method grid values; fields are '<method>.<field>'.
    seed: initialisation of head and PEFT parameters, dropout and data order.
    tune_split: which tuning split of a many-shot size the tune stage trains on (`config.data.tune_split`);
      like the seed, not part of the setting: selection averages over both.
  """
  task: str
  method: str
  lr: float
  wd: float
  hparams: tuple[tuple[str, Any], ...]
  seed: int
  tune_split: int = 0

  @property
  def config_key(self) -> str:
    """Identifies the hyperparameter setting (everything but the seed): what selection compares."""
    values = "|".join(f"{k}={v}" for k, v in self.hparams)
    return f"{self.task}|{self.method}|lr={self.lr!r}|wd={self.wd!r}" + (f"|{values}" if values else "")

  @property
  def key(self) -> str:
    """Identifies the trial: the record key that resuming skips on (split 0 keeps the VTAB-1K key)."""
    return f"{self.config_key}|seed={self.seed}" + (f"|split={self.tune_split}" if self.tune_split else "")

  def folded(self) -> dict[str, float]:
    """The traced part of the method hyperparameters: {'<method>.scale': s} when foldable, else {}."""
    if "+" in self.method:
      return {}
    return {k: float(v) for k, v in self.hparams if k.split(".", 1)[1] in FOLDABLE}

  @property
  def shape_key(self) -> tuple:
    """Trials with equal shape keys share parameter shapes and one compiled program."""
    folded = self.folded()
    return (self.task, self.method, tuple((k, v) for k, v in self.hparams if k not in folded))

  def merge_multiplier(self) -> float:
    """What the traced merge_factor is multiplied by: the product of the folded scales (1.0 if none)."""
    return math.prod(self.folded().values())

  def peft_overrides(self, fold: bool) -> dict[str, dict[str, Any]]:
    """{method: {field: value}} to set on config.peft; folded fields are set to 1.0 when `fold`."""
    out: dict[str, dict[str, Any]] = {}
    folded = self.folded() if fold else {}
    for name, value in self.hparams:
      method, field = name.split(".", 1)
      out.setdefault(method, {})[field] = 1.0 if name in folded else value
    return out

  def row(self) -> dict[str, Any]:
    """The trial's identity as a JSON-ready dict."""
    return dict(key=self.key, config_key=self.config_key, task=self.task, method=self.method, lr=self.lr,
                wd=self.wd, hparams=dict(self.hparams), seed=self.seed, tune_split=self.tune_split)


def trial_config(config: ml_collections.ConfigDict, trial: Trial, mode: str, fold: bool = True):
  """The single-run config of `trial` (what `python -m jpeft.main` would train): method, peft, lr, wd, seed.

  With `fold`, foldable fields (scale) are set to 1.0 here and carried by the traced merge_factor instead.
  """
  config = copy.deepcopy(config)
  with config.unlocked():
    config.task, config.method, config.mode, config.seed = trial.task, trial.method, mode, trial.seed
    config.data.tune_split = trial.tune_split
    config.optim.lr, config.optim.wd = trial.lr, trial.wd
    for method, values in trial.peft_overrides(fold).items():
      config.peft[method] = {**(config.peft[method].to_dict() if method in config.peft else {}), **values}
  return config


def _check_seeds(name: str, seeds: tuple) -> None:
  for seed in seeds:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
      raise GridError(f"Grid entry '{name}' has the value {seed!r}: seeds must be non-negative integers.")


def final_seeds(grid: Mapping) -> tuple[int, ...]:
  """The seeds the selected setting is retrained with: `grid.final_seeds`, or the tuning seeds if that is empty
  or absent. Raises GridError on a negative or non-integer seed."""
  values = grid.get("final_seeds") if hasattr(grid, "get") else None
  seeds = _values("final_seeds", values) if values else _values("seeds", grid["seeds"])
  _check_seeds("final_seeds" if values else "seeds", seeds)
  return tuple(int(s) for s in dict.fromkeys(seeds))


# Whether trials of a method that differ only in a paddable shape field (LoRA's rank, ...) share one program at
# the grid's largest value (`jpeft.sweep.padding.program_groups`). Grids recorded before the field read as this.
# Off: on the CPU at the mini study's 10 epochs, padding compiled 2.3x fewer programs but cost 3-8% more CPU
# seconds, since every trial then trains at the largest shape (experiments/results/pad_shapes_cpu/); it pays where
# compiling dominates (a few epochs) and is unmeasured on accelerators.
PAD_SHAPES = False


def pad_shapes(grid: Mapping) -> bool:
  """`grid.pad_shapes` (PAD_SHAPES where absent); GridError unless a bool."""
  value = grid.get("pad_shapes", PAD_SHAPES) if hasattr(grid, "get") else PAD_SHAPES
  if not isinstance(value, bool):
    raise GridError(f"Grid entry 'pad_shapes' has the value {value!r}: expected true or false "
                    "(--grid.pad_shapes=false trains each shape in a program of its own).")
  return value


def _values(name: str, values: Any) -> tuple:
  values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
  if not values:
    raise GridError(f"Grid entry '{name}' is empty: give at least one value, e.g. --grid.{name}=1e-3,1e-2.")
  return values


def default_grid() -> ml_collections.ConfigDict:
  """The study's grid for every registered method, as the `--grid` flag's defaults.

  Fields: lr, wd, seeds (tuples), final_seeds (a tuple; empty: the tuning seeds), schedule ('full' or
  'halving'), halving_eta, halving_rungs (a tuple of epochs; empty: the default), pad_shapes (bool) and one
  sub-dict per method {field: tuple of values} from the method's `grid`.
  """
  grid = ml_collections.ConfigDict()
  grid.lr = STUDY_LR
  grid.wd = STUDY_WD
  grid.seeds = STUDY_SEEDS
  # More final seeds than tuning seeds give a test spread and seed ensembles (the control of jpeft.analysis)
  # at the cost of one training per seed, without changing which setting is selected.
  grid.final_seeds = ()
  # How the tune stage spends its epochs: 'full' (the study's protocol) or 'halving' (`jpeft.sweep.halving`).
  grid.schedule = "full"
  grid.halving_eta = 2
  grid.halving_rungs = ()  # epochs at which settings are cut; empty: geometric (see halving.resolve)
  # One program per method where padding is exact (docs/concepts/sweep-trial-axis.md); false: one per shape.
  grid.pad_shapes = PAD_SHAPES
  for name, cls in sorted(peft.registry().items()):
    grid[name] = {field: tuple(values) for field, values in cls.grid.items()}
  return grid


def expand(task: str, method: str, grid: Mapping, tune_splits: int = 1) -> list[Trial]:
  """All trials of `method` on `task`: lr x wd x the method's grid x seeds x tuning splits, in a fixed order.

  Args:
    task: task name.
    method: method string; each '+'-joined method contributes its `grid[<name>]` fields.
    grid: mapping with 'lr', 'wd', 'seeds' and per-method {field: values} (see `default_grid`); a method
      without an entry uses its registered grid.
    tune_splits: tuning splits per setting (`jpeft.train.splits.num_tune_splits`: 5 for small many-shot sizes).
  Raises:
    GridError naming the entry: empty, non-positive lr, negative wd, non-integer seed, or a field the method
      does not have.
  """
  lrs, wds, seeds = (_values(k, grid[k]) for k in ("lr", "wd", "seeds"))
  _check_seeds("seeds", seeds)
  for lr in lrs:
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
      raise GridError(f"Grid entry 'lr' has the value {lr!r}: learning rates must be positive finite numbers.")
  for wd in wds:
    if not (isinstance(wd, (int, float)) and wd >= 0 and math.isfinite(wd)):
      raise GridError(f"Grid entry 'wd' has the value {wd!r}: weight decays must be non-negative finite numbers.")
  known = peft.registry()
  axes: list[tuple[str, tuple]] = []
  for name in method.split("+"):
    if name not in known:
      raise GridError(f"Unknown PEFT method '{name}' in the sweep's method list '{method}'. Registered: "
                      f"{sorted(known)}.")
    method_grid = grid.get(name) if hasattr(grid, "get") else None
    method_grid = dict(method_grid) if method_grid is not None else dict(known[name].grid)
    fields = {f.name for f in dataclasses.fields(known[name])}
    for field, values in sorted(method_grid.items()):
      if field not in fields:
        raise GridError(f"Grid entry '{name}.{field}' names no hyperparameter of PEFT method '{name}'. Its "
                        f"fields: {sorted(fields) or 'none'}.")
      axes.append((f"{name}.{field}", _values(f"{name}.{field}", values)))
  trials = []
  for lr, wd, *values, seed, split in itertools.product(lrs, wds, *[v for _, v in axes], seeds,
                                                         range(tune_splits)):
    hparams = tuple((name, value) for (name, _), value in zip(axes, values))
    trials.append(Trial(task, method, float(lr), float(wd), hparams, int(seed), split))
  # Building each shape once catches impossible values (e.g. an odd RepAdapter bottleneck) before training.
  for trial in {t.shape_key: t for t in trials}.values():
    try:
      peft.build_methods(method, trial.peft_overrides(fold=False))
    except (ValueError, TypeError) as e:
      raise GridError(f"Grid values {dict(trial.hparams)} for '{method}' are not buildable: {e}") from e
  return trials


def shape_groups(trials: Sequence[Trial]) -> list[list[Trial]]:
  """Trials grouped by `shape_key`, groups and members in first-seen order."""
  groups: dict[tuple, list[Trial]] = {}
  for trial in trials:
    groups.setdefault(trial.shape_key, []).append(trial)
  return list(groups.values())
