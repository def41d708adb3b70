"""Many-shot data as the study draws it (`/work/shared/spec/vtab.md`, "Many-shot and robustness").

Every training subset is a class-balanced, seeded draw from the whole training pool, and every size has its own
tuning splits held out of that subset:

  dataset      size                 examples            tuning splits (train / val)      recipe (epochs / warmup)
  cifar100     train500, train1k    5, 10 per class     5 random 80/20 splits, averaged  100 / 10
               train5k, train10k    50, 100 per class   4,500 / 500, 9,000 / 1,000       40 / 4
               full                 all 50,000          49,000 / 1,000                   40 / 4
  resisc45     train225 ... 9000    5 ... 200 per class 5 x 80/20 up to 20 per class,    40 / 5
                                                        else 90/10 (one split)
               full                 the 25,200 pool     22,680 / 2,520                   40 / 5
  clevr_dist   full                 all 70,000          69,000 / 1,000 (held out)        40 / 4
  imagenet     train100shot         100 per class       90 / 10 per class (one split)    100 / 10
               (registered in `jpeft.data.shift`: never drawn from ImageNet's held-out 'val', which the
               study's runs early-stop on; configs/clip_imagenet.py)

Validation draws are class-balanced (1,000 = 10 per class on CIFAR) except on CLEVR, whose labels are derived
from the scene (no `label` feature to balance on). RESISC45 has no official split: its test set is 140 per class
drawn from all 31,500 images, and the pool is the other 25,200. CLEVR tests on TFDS `validation` as the study;
the study's CLEVR validation lies inside its training set, ours is held out of it (no leak).

Split names of a size: '<size>' (final training), 'test', '<size>_tune<j>' / '<size>_val<j>' (tuning split j).
A user's own subset (`index_file`, e.g. the study's released `.npy` files) replaces the seeded draw; its tuning
splits follow the size's rule. Indices are in the dataset's source order (see `tfds_source.source_positions`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from jpeft.data.errors import DataError
from jpeft.data.tasks import SplitSpec, Subset


@dataclasses.dataclass(frozen=True)
class Size:
  """One training-set size.

  Attributes:
    name: 'train500', ..., 'full'.
    per_class: examples per class; None takes the whole pool.
    val: examples held out of the subset per tuning split: per class (class-balanced datasets) or in total.
    tune_splits: number of random tuning splits whose val accuracies are averaged (5 for the smallest sizes).
    epochs, warmup_epochs: the study's recipe at this size.
  """
  name: str
  per_class: Optional[int]
  val: int
  tune_splits: int
  epochs: int = 40
  warmup_epochs: int = 4


@dataclasses.dataclass(frozen=True)
class ManyShot:
  """A dataset's many-shot protocol.

  Attributes:
    task: registered task name.
    sizes: the sizes, smallest first.
    test: the test split (TFDS split string or Subset of `source`).
    source: the TFDS split the subsets are drawn from.
    reserved: examples of `source` never trained on (RESISC45's test draw), or None.
    balanced: draws per class (the TFDS `label` is the task's label); False: uniform draws.
    seed: seed of every draw (tuning split j uses seed + 1 + j).
    augment: the final run's training augmentation (tuning runs have none).
    normalization: pixel normalisation (`jpeft.data.preprocess`): 'inception' is mean = std = 0.5.
    center_crop: evaluate on resize 256 + centre crop 224 (else a plain resize).
  """
  task: str
  sizes: tuple[Size, ...]
  test: SplitSpec = 'test'
  source: str = 'train'
  reserved: Optional[Subset] = None
  balanced: bool = True
  seed: int = 0
  augment: Optional[str] = 'rrc+hflip'
  normalization: str = 'inception'
  center_crop: bool = True

  def size(self, name: str) -> Size:
    """The size called `name`; DataError listing the known ones."""
    for size in self.sizes:
      if size.name == name:
        return size
    raise DataError(f"Many-shot size '{name}' is not defined for task '{self.task}'. Known sizes: "
                    f"{', '.join(s.name for s in self.sizes)}. Set --config.data.subset to one of them.")

  def train(self, size: Size, index_file: Optional[str] = None) -> Subset:
    """The size's training subset (the final run's training split)."""
    if index_file is not None:
      return Subset(self.source, None, seed=self.seed, index_file=index_file, exclude=self.reserved)
    return Subset(self.source, size.per_class, seed=self.seed, per_class=size.per_class is not None,
                  exclude=self.reserved)

  def tune(self, size: Size, split: int, index_file: Optional[str] = None) -> tuple[Subset, Subset]:
    """(train, val) of tuning split `split` of the size: val drawn inside the subset, train the rest."""
    if not 0 <= split < size.tune_splits:
      raise DataError(f"Tuning split {split} does not exist for size '{size.name}' of '{self.task}', which "
                      f"has {size.tune_splits}: set --config.data.tune_split to 0..{size.tune_splits - 1}.")
    subset = self.train(size, index_file)
    val = Subset(self.source, size.val, seed=self.seed + 1 + split, per_class=self.balanced, within=subset)
    return Subset(self.source, None, within=subset, exclude=val), val

  def splits(self, size_name: str, mode: str, tune_split: int = 0, index_file: Optional[str] = None
             ) -> tuple[tuple[str, SplitSpec], tuple[str, SplitSpec]]:
    """((train name, spec), (eval name, spec)) of `mode` ('tune' or 'final') at size `size_name`."""
    size = self.size(size_name)
    if mode == 'tune':
      train, val = self.tune(size, tune_split, index_file)
      return (f'{size.name}_tune{tune_split}', train), (f'{size.name}_val{tune_split}', val)
    return (size.name, self.train(size, index_file)), ('test', self.test)


def _balanced_sizes(per_class: dict[str, int], full_val: int, small_up_to: int,
                    small_recipe: tuple[int, int], recipe: tuple[int, int]) -> tuple[Size, ...]:
  """Sizes up to `small_up_to` per class: five 80/20 splits; larger: one 90/10 split; 'full': `full_val`."""
  sizes = []
  for name, k in per_class.items():
    small = k <= small_up_to
    sizes.append(Size(name, k, val=k // 5 if small else k // 10, tune_splits=5 if small else 1,
                      epochs=(small_recipe if small else recipe)[0],
                      warmup_epochs=(small_recipe if small else recipe)[1]))
  return tuple(sizes) + (Size('full', None, val=full_val, tune_splits=1, epochs=recipe[0],
                              warmup_epochs=recipe[1]),)


MANY_SHOT: dict[str, ManyShot] = {m.task: m for m in (
    ManyShot('cifar100', _balanced_sizes({'train500': 5, 'train1k': 10, 'train5k': 50, 'train10k': 100},
                                         full_val=10, small_up_to=10,
                                         small_recipe=(100, 10), recipe=(40, 4))),
    ManyShot('resisc45', _balanced_sizes({'train225': 5, 'train450': 10, 'train900': 20, 'train2250': 50,
                                          'train4500': 100, 'train9000': 200},
                                         full_val=56, small_up_to=20,
                                         small_recipe=(40, 5), recipe=(40, 5)),
             test=Subset('train', 140, seed=0, per_class=True),
             reserved=Subset('train', 140, seed=0, per_class=True), augment='rrc+hflip+vflip'),
    ManyShot('clevr_dist', (Size('full', None, val=1000, tune_splits=1),), test='validation', balanced=False,
             augment=None, normalization='imagenet', center_crop=False),
)}


def register_many_shot(protocol: ManyShot) -> ManyShot:
  """Adds a dataset's protocol (e.g. a Mini VTAB many-shot task) under `protocol.task`."""
  MANY_SHOT[protocol.task] = protocol
  return protocol


def get_many_shot(task: str) -> ManyShot:
  """The protocol of `task`; DataError naming the tasks that have one."""
  from jpeft.data import tasks  # pylint: disable=g-import-not-at-top  # registers the mini many-shot task
  tasks.list_tasks()
  if task not in MANY_SHOT:
    raise DataError(f"Task '{task}' has no many-shot protocol (config.data.subset is set). Tasks with one: "
                    f"{', '.join(sorted(MANY_SHOT))}. Clear --config.data.subset for VTAB-1K splits.")
  return MANY_SHOT[task]
