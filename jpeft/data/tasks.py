"""Registry of classification tasks: which TFDS builder, which splits, how labels are derived.

A `Task` is pure data plus one function (`preprocess`) that maps a raw TFDS example to
`{'image': uint8 [H, W, 3], 'label': int32 []}`. Everything downstream (decode, resize,
normalise, batch) is shared by all tasks and lives in `input_pipeline.py`.

Registering a simple TFDS dataset (features `image` and `label`, splits `train` /
`validation` / `test`) takes one line::

    register_task(Task(name='mini_digits', builder='mini_digits', num_classes=10, group='mini'))

The built-in tasks (the 19 VTAB-1K tasks in `vtab.py`, the distribution-shift sets in
`shift.py`) and the optional `jpeft.data.mini_vtab` module are imported lazily, on the first
`get_task` / `list_tasks` call, so importing this module stays cheap and free of cycles.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Callable, Mapping, Optional, Union

import numpy as np

from jpeft.data.quiet_tf import tf
from jpeft.data.errors import DataError

# The four VTAB-1K split names every VTAB-style task defines.
VTAB_1K_SPLITS = ('train800', 'val200', 'train800val200', 'test')


@dataclasses.dataclass(frozen=True)
class Subset:
  """A seeded random subset of a TFDS split, e.g. 5 images per class of CIFAR-100 train.

  Attributes:
    split: the TFDS split string to draw from (e.g. 'train[:45000]').
    size: number of examples in total (`per_class=False`) or per class (`per_class=True`);
      None takes every example not in `exclude`.
    seed: seed of the draw; the same (split, size, seed, exclude) always gives the same examples.
    per_class: draw `size` examples from every class (class-balanced k-shot) instead of
      `size` examples uniformly. Uses the raw TFDS `label` feature (read without decoding
      images), so it suits tasks whose label is the TFDS label (CIFAR, RESISC45, ImageNet).
    exclude: a Subset of the same split whose examples are never drawn, e.g. a held-out
      validation set (ImageNet's 10 per class), so that the two are disjoint.
    within: a Subset of the same split to draw from instead of the whole split, e.g. a many-shot
      tuning split inside its training subset (`jpeft.data.manyshot`).
    index_file: a `.npy` of indices into the split's source order (the dataset's own file order:
      TFDS's `id` feature where the builder has one, as for CIFAR; else the TFDS order) to draw
      from, e.g. the study's released subset files.
  """
  split: str
  size: Optional[int]
  seed: int = 0
  per_class: bool = False
  exclude: Optional['Subset'] = None
  within: Optional['Subset'] = None
  index_file: Optional[str] = None

  def __post_init__(self):
    for role, other in (('excludes', self.exclude), ('is drawn within', self.within)):
      if other is not None and other.split != self.split:
        raise DataError(f"Subset of '{self.split}' {role} a subset of another split "
                        f"('{other.split}'); indices only match within one split. Give "
                        f"both the same `split`.")

  def __str__(self) -> str:
    kind = 'per class' if self.per_class else 'in total'
    text = f'{self.split} (all' if self.size is None else f'{self.split} ({self.size} {kind}'
    text += f', seed {self.seed})'
    text += f' of {self.index_file}' if self.index_file is not None else ''
    text += f' within {self.within}' if self.within is not None else ''
    return text + (f' without {self.exclude}' if self.exclude is not None else '')


SplitSpec = Union[str, Subset]


def standard_splits(train: str = 'train', val: str = 'validation', test: str = 'test',
                    num_train: Optional[int] = None) -> dict[str, str]:
  """VTAB-style split table for a builder with separate train / validation / test splits.

  Returns the TFDS split strings for 'train800', 'val200', 'train800val200', 'test', and the
  full 'train', 'val', 'trainval'. `num_train` is unused here (kept for symmetry with
  `cut_splits`).
  """
  del num_train
  return {
      'train800': f'{train}[:800]',
      'val200': f'{val}[:200]',
      'train800val200': f'{train}[:800]+{val}[:200]',
      'test': test,
      'train': train,
      'val': val,
      'trainval': f'{train}+{val}',
  }


def cut_splits(num_train: int, train_percent: int, val_percent: Optional[int] = None,
               test: Optional[str] = None, source: str = 'train') -> dict[str, str]:
  """VTAB-style split table for a task whose validation split is cut out of TFDS `train`.

  The cut follows task_adaptation: `n_train = train_percent * num_train // 100` examples for
  training, the next `val_percent` % (or the rest, if `val_percent` is None) for validation,
  and, where `test` is None, the remainder after train+val as the test split.

  Args:
    num_train: number of examples in the TFDS `source` split (official TFDS metadata).
    train_percent: percentage of `source` used as the task's training split.
    val_percent: percentage used for validation; None means "everything after train".
    test: TFDS split string for the test set; None means the remainder of `source`.
    source: the TFDS split that is cut (always 'train' for VTAB).
  """
  n_train = train_percent * num_train // 100
  n_val = (num_train - n_train) if val_percent is None else val_percent * num_train // 100
  end_val = n_train + n_val
  splits = {
      'train800': f'{source}[:800]',
      'val200': f'{source}[{n_train}:{n_train + 200}]',
      'train800val200': f'{source}[:800]+{source}[{n_train}:{n_train + 200}]',
      'train': f'{source}[:{n_train}]',
      'val': f'{source}[{n_train}:{end_val}]' if val_percent is not None else f'{source}[{n_train}:]',
      'trainval': f'{source}[:{end_val}]' if val_percent is not None else source,
  }
  splits['test'] = test if test is not None else f'{source}[{end_val}:]'
  return splits


def default_preprocess(example: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Raw TFDS example -> {'image': uint8 [H, W, 3], 'label': int32 []}.

  Takes `image` and `label`; grey-scale images ([H, W, 1]) are tiled to 3 channels.
  """
  return {'image': to_rgb(example['image']), 'label': tf.cast(example['label'], tf.int32)}


def to_rgb(image: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, C] with C in {1, 3} -> uint8 [H, W, 3] (grey-scale is tiled)."""
  image = tf.convert_to_tensor(image)
  channels = tf.shape(image)[-1]
  return tf.cond(channels == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)


@dataclasses.dataclass(frozen=True)
class Task:
  """One classification task on top of a TFDS builder.

  Attributes:
    name: registry key, e.g. 'clevr_count'.
    builder: TFDS name with config and version pattern, e.g. 'clevr:3.*.*' or
      'sun397/tfds:4.*.*'. Passed as-is to `tfds.builder`.
    num_classes: number of labels after `preprocess`; labels are in [0, num_classes).
    group: 'natural' | 'specialized' | 'structured' for VTAB; anything else otherwise.
    splits: split name -> TFDS split string (or `Subset`). VTAB tasks define at least
      'train800', 'val200', 'train800val200', 'test', 'train', 'val', 'trainval'.
    preprocess: raw TFDS example -> {'image': uint8 [H, W, 3], 'label': int32 []}.
    alt_builders: builder strings tried, in order, when `builder` is not available in the
      installed TFDS nor in `data_dir` (e.g. a newer major version).
    manual_download: for datasets TFDS cannot download: where to get the files. The error
      for a missing dataset quotes it together with the manual directory and the build command.
    folder_names: directory names of this task in the processed-folder layout
      (`<root>/<folder name>/train800.txt`, ...), first one preferred; defaults to `name`.
    split_sizes: number of examples of each split (as far as known without the data);
      used by `num_examples` when TFDS metadata is not available.
    class_subset: for evaluation sets that cover only some classes of a larger label space
      (ImageNet-A / -R: 200 of 1000): the label indices present. None means all classes.
    upstream_classes: per class, the labels of the backbone's pre-training task it stands for, so
      the pretrained classifier, averaged over each tuple, is a zero-shot head (`head_init='upstream'`).
  """
  name: str
  builder: str
  num_classes: int
  group: str = 'other'
  splits: Mapping[str, SplitSpec] = dataclasses.field(default_factory=standard_splits)
  preprocess: Callable[[Mapping[str, tf.Tensor]], dict] = default_preprocess
  alt_builders: tuple[str, ...] = ()
  manual_download: Optional[str] = None
  folder_names: tuple[str, ...] = ()
  split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
  class_subset: Optional[tuple[int, ...]] = None
  upstream_classes: Optional[tuple[tuple[int, ...], ...]] = None

  def split(self, name: str) -> SplitSpec:
    """The TFDS split string (or `Subset`) for split `name`; DataError if unknown."""
    if name not in self.splits:
      raise DataError(
          f"Task '{self.name}' has no split '{name}'. Known splits: "
          f"{', '.join(sorted(self.splits))}. Use one of these names (e.g. 'train800' or "
          f"'test'), or register a task whose `splits` includes '{name}'.")
    return self.splits[name]

  @property
  def dataset_name(self) -> str:
    """TFDS dataset name without config or version: 'sun397/tfds:4.*.*' -> 'sun397'."""
    return self.builder.split(':')[0].split('/')[0]

  @property
  def folder_candidates(self) -> tuple[str, ...]:
    return self.folder_names or (self.name,)


_REGISTRY: dict[str, Task] = {}
# Modules that register tasks at import time. `jpeft.data.mini_vtab` is owned by another
# module and optional: a missing module is skipped, any other import error is raised.
_BUILTIN_MODULES = ('jpeft.data.vtab', 'jpeft.data.shift', 'jpeft.data.mini_vtab',
                    'jpeft.data.mini_manyshot')
_builtins_loaded = False


def _load_builtins() -> None:
  global _builtins_loaded
  if _builtins_loaded:
    return
  _builtins_loaded = True  # Set first: the modules call register_task while importing.
  for module in _BUILTIN_MODULES:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name != module:
        raise
      logging.debug('Optional task module %s not present.', module)


def register_task(task: Task, *, overwrite: bool = False) -> Task:
  """Adds `task` to the registry under `task.name` and returns it.

  Re-registering an identical task is a no-op (modules may be imported twice); a different
  task under an existing name raises DataError unless `overwrite=True`.
  """
  if not isinstance(task, Task):
    raise DataError(f'register_task expects a jpeft.data.Task, got {type(task).__name__}: '
                    f'{task!r}. Build one with Task(name=..., builder=..., num_classes=...).')
  old = _REGISTRY.get(task.name)
  if old is not None and old != task and not overwrite:
    raise DataError(
        f"A different task named '{task.name}' is already registered (builder "
        f"'{old.builder}'). Pick another name or pass overwrite=True.")
  _REGISTRY[task.name] = task
  return task


def get_task(name: Union[str, Task]) -> Task:
  """The registered task called `name` (a `Task` is returned unchanged).

  Raises:
    DataError (a ValueError) listing the known names when `name` is not registered.
  """
  if isinstance(name, Task):
    return name
  _load_builtins()
  if name not in _REGISTRY:
    raise DataError(
        f"Unknown task '{name}'. Known tasks: {', '.join(sorted(_REGISTRY))}. Check the "
        f"spelling, or register your own with jpeft.data.register_task(Task(...)); for a "
        f"folder of images use source='imagefolder'.")
  return _REGISTRY[name]


def list_tasks(group: Optional[str] = None) -> list[str]:
  """Names of registered tasks, in registration order; only `group` if given."""
  _load_builtins()
  return [n for n, t in _REGISTRY.items() if group is None or t.group == group]


def class_mask(task: Union[str, Task]) -> np.ndarray:
  """bool [num_classes]: True for the classes the task's data covers (all for most tasks; 200
  of 1000 for ImageNet-A / -R). Restrict logits with `jnp.where(mask, logits, -jnp.inf)`."""
  task = get_task(task)
  mask = np.zeros([task.num_classes], bool)
  mask[list(task.class_subset) if task.class_subset is not None else slice(None)] = True
  return mask
