"""A many-shot Mini VTAB task, so that the many-shot study (experiments/many_shot.py) runs offline.

`mini_objects_many`: the shapes of `mini_objects` (10 classes, 32x32), drawn from another seed, with a
20,000-image training pool and a 2,000-image test split; its many-shot protocol (`jpeft.data.manyshot`) has the
CIFAR-100 structure at a scale this machine trains in minutes: 5, 10 per class (five 80/20 tuning splits), 50 and
200 per class (one 90/10 split), and the full pool (50 per class held out). The recipe per size is shorter than
the study's (32x32 images, a 1.3M-parameter backbone): epochs shrink as the data grow, so every size costs about
the same number of steps.
"""
from __future__ import annotations

import functools

from jpeft.data import manyshot, mini_vtab
from jpeft.data.quiet_tf import tfds
from jpeft.data.tasks import Task, register_task

NAME = 'mini_objects_many'
SOURCE = 'mini_objects'  # whose renderer draws the images
SPLIT_SIZES = {'train': 20_000, 'test': 2_000}
SEED = 1  # mini_objects itself is seed 0: these are other images


@functools.cache
def define_builder() -> type:
  """The task's TFDS builder (rendered, nothing downloaded), registered with TFDS on first use."""

  class MiniObjectsMany(mini_vtab.builder_base()):
    name = NAME
    TASK = mini_vtab.get_mini_task(SOURCE)
    SEED = SEED

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing to download
      return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split: str):
      for i, sample in enumerate(mini_vtab.samples(SOURCE, split, SPLIT_SIZES[split], seed=SEED)):
        yield i, {'image': sample.image, 'label': sample.label}

  return MiniObjectsMany


def prepare(data_dir=None) -> None:
  """Generates the task's TFDS files into `data_dir` (about a minute on one core)."""
  define_builder()
  tfds.builder(NAME, data_dir=data_dir).download_and_prepare()


register_task(Task(name=NAME, builder=f'{NAME}:1.*.*', num_classes=mini_vtab.get_mini_task(SOURCE).num_classes,
                   group='mini_manyshot', splits={'train': 'train', 'test': 'test'},
                   split_sizes=dict(SPLIT_SIZES)))

manyshot.register_many_shot(manyshot.ManyShot(NAME, (
    manyshot.Size('train50', 5, val=1, tune_splits=5, epochs=30, warmup_epochs=3),
    manyshot.Size('train100', 10, val=2, tune_splits=5, epochs=30, warmup_epochs=3),
    manyshot.Size('train500', 50, val=5, tune_splits=1, epochs=15, warmup_epochs=2),
    manyshot.Size('train2000', 200, val=20, tune_splits=1, epochs=8, warmup_epochs=1),
    manyshot.Size('full', None, val=50, tune_splits=1, epochs=3, warmup_epochs=1),
    # The shipped backbone was pre-trained on [0, 1] pixels at 32x32 without augmentation.
), augment=None, normalization='none', center_crop=False))
