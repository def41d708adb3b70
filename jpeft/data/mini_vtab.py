"""Mini VTAB: small procedurally generated tasks that run the whole VTAB code path offline.

Real VTAB data (and real ImageNet-21K weights) cannot be downloaded everywhere. Mini VTAB is an
honest stand-in, not a benchmark: seven 32x32 RGB classification tasks rendered from numpy with a
fixed seed, in the spirit of VTAB's three groups, each a real TFDS `GeneratorBasedBuilder` with
`train` (1000), `validation` (200) and `test` (1000) splits, registered as jpeft tasks with the
VTAB-1K split rules (train800 = train[:800], val200 = validation[:200], test = test).

  group (jpeft)     task            classes  label                          stands in for
  mini_natural      mini_digits     10       handwritten digit (sklearn)    svhn / cifar
  mini_natural      mini_objects    10       shape of the object            caltech101 / pets
  mini_specialized  mini_textures   8        texture family                 dtd / eurosat
  mini_specialized  mini_cells      2        an atypical (large) cell?      patch_camelyon
  mini_structured   mini_count      8        number of objects - 1          clevr_count
  mini_structured   mini_loc        8        object x-position bin          dsprites_loc
  mini_structured   mini_ori        8        object orientation bin         dsprites_ori

The groups are named 'mini_<group>' so that `list_tasks('natural')` keeps meaning the real VTAB set.
Two separate upstream tasks pre-train the shipped backbone (`experiments/pretrain_mini.py`), neither a downstream
task: `UPSTREAM` (72 classes, shape x hue bin of the main object x kind of backdrop, with distractors), then
`UPSTREAM_GEOMETRY` (144 classes, which of 48 objects x backdrop, colour a nuisance; its head is the shipped one).
`ROBUSTNESS_TASKS` are the offline robustness study's: `mini_shapes` (the upstream scenes, labelled by shape) and
four test-only shifted sets of it (`jpeft/data/mini/shapes.py`); `prepare()` builds them only when named.

The generators live in `jpeft/data/mini/`, one module per task over shared drawing code (`draw.py`); this module
holds the registry, the seeded sampling, the TFDS builders and the jpeft task registration.

Every sample is a pure function of (seed, task name, split, index order): `samples(task, split, n,
seed)` draws from `np.random.default_rng([seed, crc32(task name), split id])`, so the same seed gives
the same bytes. Float rendering (sin, cos) may differ in the last ulp across CPU architectures, which
can flip an edge pixel; labels come from the sampled factors and never change.

Images are rendered at 2x resolution and averaged 2x2, so edges are anti-aliased.
"""
from __future__ import annotations

import functools
import zlib
from typing import ClassVar, Iterator, Optional

import numpy as np
from etils import epath

from jpeft.data.errors import DataError
from jpeft.data.quiet_tf import tfds
from jpeft.data.mini import (cells, count, digits, draw, loc, objects, ori, shapes, textures, upstream,
                             upstream_geometry)
from jpeft.data.mini.draw import MiniTask, Sample
from jpeft.data.tasks import Task, register_task, standard_splits

IMAGE_SIZE = draw.IMAGE_SIZE
SPLIT_SIZES = {'train': 1000, 'validation': 200, 'test': 1000}
_SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}
VERSION = '1.0.0'


MINI_TASKS: dict[str, MiniTask] = {t.name: t for t in (
    MiniTask('mini_digits', 'mini_natural', 10, digits.render_digits,
             'Handwritten digits (scikit-learn), coloured, near the centre of random backdrops.'),
    MiniTask('mini_objects', 'mini_natural', 10, objects.render_objects,
             'Ten object shapes at random pose and colour on random backdrops.'),
    MiniTask('mini_textures', 'mini_specialized', 8, textures.render_textures,
             'Eight texture families at random scale, angle and colours.'),
    MiniTask('mini_cells', 'mini_specialized', 2, cells.render_cells,
             'Tissue patches: does one nucleus look atypical (large, dark)?'),
    MiniTask('mini_count', 'mini_structured', 8, count.render_count,
             'Number of objects (1-8), label = count - 1.'),
    MiniTask('mini_loc', 'mini_structured', loc.LOC_BINS, loc.render_loc,
             'Horizontal position of one object, 8 bins.'),
    MiniTask('mini_ori', 'mini_structured', ori.ORI_BINS, ori.render_ori,
             'Orientation of one dart, 8 bins of 45 degrees.'),
)}
UPSTREAM = MiniTask('mini_upstream', 'upstream',
                    len(upstream.UPSTREAM_SHAPES) * upstream.HUE_BINS * len(upstream.BACKDROPS),
                    upstream.render_upstream, 'First pre-training stage of the shipped backbone: shape x hue of '
                    'the main object x kind of backdrop.')
# The shipped backbone's second stage (issue 14; `experiments/pretrain_mini.py --upstream --init`).
UPSTREAM_GEOMETRY = MiniTask('mini_upstream_geometry', 'upstream', upstream_geometry.NUM_CLASSES,
                             upstream_geometry.render_geometry, 'Which of 6 shapes or 42 stroke glyphs the main '
                             'object is x kind of backdrop; its colour is random.')
UPSTREAM_TASKS = {t.name: t for t in (UPSTREAM, UPSTREAM_GEOMETRY)}
# The offline robustness study (`jpeft/data/mini/shapes.py`): an in-distribution task whose classes are sets of
# upstream classes, and test-only shifted sets of it (one change each), as ImageNet and V2 / Sketch / A / R.
_SHIFTED = dict(group='mini_shift', splits=('test',))
ROBUSTNESS_TASKS: dict[str, MiniTask] = {t.name: t for t in (
    MiniTask('mini_shapes', 'mini_robustness', shapes.NUM_CLASSES, shapes.render_shapes,
             'Shape of the main object in upstream-like scenes (6 classes, each 12 upstream classes).',
             upstream_classes=shapes.UPSTREAM_CLASSES),
    MiniTask('mini_shapes_backdrop', num_classes=shapes.NUM_CLASSES, render=shapes.render_backdrop,
             description='mini_shapes on unseen backdrops: gradients, crowds of distractors.', **_SHIFTED),
    MiniTask('mini_shapes_colour', num_classes=shapes.NUM_CLASSES, render=shapes.render_colour,
             description='mini_shapes with grey, pale or dark objects.', **_SHIFTED),
    MiniTask('mini_shapes_sketch', num_classes=shapes.NUM_CLASSES, render=shapes.render_sketch,
             description='mini_shapes as dark outlines on paper; 4 of the 6 shapes.',
             class_subset=shapes.SKETCH_CLASSES, **_SHIFTED),
    MiniTask('mini_shapes_corrupt', num_classes=shapes.NUM_CLASSES, render=shapes.render_corrupt,
             description='mini_shapes under noise, blur, low contrast or pixelation.', **_SHIFTED),
)}
_GENERATED = {**MINI_TASKS, **ROBUSTNESS_TASKS}


def get_mini_task(name: str) -> MiniTask:
  """The generated task `name` (Mini VTAB, robustness or an upstream task); DataError if unknown."""
  if name in UPSTREAM_TASKS:
    return UPSTREAM_TASKS[name]
  if name not in _GENERATED:
    raise DataError(f"Unknown Mini VTAB task '{name}'. Known: {', '.join(_GENERATED)} and the upstream tasks "
                    f"{', '.join(UPSTREAM_TASKS)}.")
  return _GENERATED[name]


def samples(name: str, split: str, num: Optional[int] = None, seed: int = 0) -> Iterator[Sample]:
  """The first `num` samples (default: the split's size) of task `name`'s `split`, from `seed`.

  The i-th sample is the same for any `num` >= i + 1.
  """
  task = get_mini_task(name)
  if split not in task.splits:
    raise DataError(f"Mini VTAB task '{name}' has splits {list(task.splits)}, not '{split}'.")
  num = SPLIT_SIZES[split] if num is None else num
  rng = np.random.default_rng([seed, zlib.crc32(task.name.encode()), _SPLIT_IDS[split]])
  for _ in range(num):
    yield task.render(rng, split)


def generate(name: str, split: str, num: Optional[int] = None,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Arrays of `samples(...)`: images uint8 [num, 32, 32, 3], labels int64 [num]."""
  out = list(samples(name, split, num, seed))
  return (np.stack([s.image for s in out]) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
          np.array([s.label for s in out], np.int64))


# ------------------------------------------------------------------------------------------
# TFDS builders (one per task, named like the task) and jpeft task registration.
# ------------------------------------------------------------------------------------------

@functools.cache
def builder_base() -> type:
  """The base TFDS builder of a Mini VTAB task: nothing is downloaded, every example is rendered. Defined on
  first use (when a TFDS builder is made), so that importing the task registry does not import TFDS."""

  class MiniVtabBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(VERSION)
    TASK: ClassVar[MiniTask]
    SEED: ClassVar[int] = 0

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
      # TFDS derives this from the module's package and, for a package module, type-checks it
      # against `importlib_resources`, which tensorflow-datasets does not install; the file is known.
      return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
      return tfds.core.DatasetInfo(
          builder=self,
          description=f'Mini VTAB ({self.TASK.group}): {self.TASK.description} Generated by '
                      f'jpeft.data.mini_vtab from seed {self.SEED}.',
          features=tfds.features.FeaturesDict({
              'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
              'label': tfds.features.ClassLabel(num_classes=self.TASK.num_classes),
          }),
          supervised_keys=('image', 'label'),
          # Stored in generation order, so train[:800] are the generator's first 800 examples.
          disable_shuffling=True,
          homepage='https://github.com/jpeft/jpeft',
      )

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing to download
      return {split: self._generate_examples(split) for split in self.TASK.splits}

    def _generate_examples(self, split: str):
      for i, sample in enumerate(samples(self.TASK.name, split, seed=self.SEED)):
        yield i, {'image': sample.image, 'label': sample.label}

  return MiniVtabBuilder


@functools.cache
def define_builders() -> dict[str, type]:
  """The TFDS builder of every generated task (named like it), registered with TFDS by their definition here."""
  return {name: type(''.join(p.capitalize() for p in name.split('_')), (builder_base(),),
                     {'name': name, 'TASK': task, '__module__': __name__})
          for name, task in _GENERATED.items()}


def prepare(names: Optional[list[str]] = None, data_dir: Optional[str] = None) -> None:
  """Generates the TFDS files of Mini VTAB tasks (all by default) into `data_dir` (TFDS default:
  ~/tensorflow_datasets). Already prepared tasks are left as they are. Takes seconds per task."""
  define_builders()
  for name in names or list(MINI_TASKS):  # the robustness tasks only when named
    get_mini_task(name)
    tfds.builder(name, data_dir=data_dir).download_and_prepare()


for _task in _GENERATED.values():
  if _task.splits == tuple(SPLIT_SIZES):
    _splits = standard_splits()
    _sizes = {'train800': 800, 'val200': 200, 'train800val200': 1000, 'test': SPLIT_SIZES['test'],
              'train': SPLIT_SIZES['train'], 'val': SPLIT_SIZES['validation'],
              'trainval': SPLIT_SIZES['train'] + SPLIT_SIZES['validation']}
  else:  # a shifted test set
    _splits, _sizes = {'test': 'test'}, {'test': SPLIT_SIZES['test']}
  register_task(Task(name=_task.name, builder=f'{_task.name}:1.*.*', num_classes=_task.num_classes,
                     group=_task.group, splits=_splits, split_sizes=_sizes, class_subset=_task.class_subset,
                     upstream_classes=_task.upstream_classes))
