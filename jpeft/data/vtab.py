"""The 19 VTAB-1K tasks (google-research/task_adaptation definitions) and their label rules.

Split strings follow `/work/shared/spec/vtab.md`: 'train800' is always `train[:800]`; 'val200'
is `validation[:200]` where TFDS has a validation split, otherwise the first 200 examples
after the task's own train/val cut of TFDS `train`. Cuts are absolute indices computed from
the official TFDS split sizes below (task_adaptation computes `percent * n // 100` from the
same metadata), so the split table is fixed data that tests can check without the datasets.

Many-shot subsets and their tuning splits (CIFAR-100, RESISC45, CLEVR-distance) are `jpeft.data.manyshot`.
"""
from __future__ import annotations

import re
from typing import Mapping


from jpeft.data.quiet_tf import tf
from jpeft.data.tasks import Task, cut_splits, register_task, standard_splits, to_rgb

# Official TFDS split sizes of the builders used here (from each dataset's TFDS catalog page).
TFDS_SPLIT_SIZES: dict[str, dict[str, int]] = {
    'cifar100': {'train': 50000, 'test': 10000},
    'caltech101': {'train': 3060, 'test': 6084},
    'dtd': {'train': 1880, 'validation': 1880, 'test': 1880},
    'oxford_flowers102': {'train': 1020, 'validation': 1020, 'test': 6149},
    'oxford_iiit_pet': {'train': 3680, 'test': 3669},
    'svhn_cropped': {'train': 73257, 'test': 26032, 'extra': 531131},
    'sun397': {'train': 76128, 'validation': 10875, 'test': 21750},
    'patch_camelyon': {'train': 262144, 'validation': 32768, 'test': 32768},
    'eurosat': {'train': 27000},
    'resisc45': {'train': 31500},
    'diabetic_retinopathy_detection': {'train': 35126, 'validation': 10906, 'test': 42670},
    'clevr': {'train': 70000, 'validation': 15000, 'test': 15000},
    'dmlab': {'train': 65550, 'validation': 22628, 'test': 22735},
    'kitti': {'train': 6347, 'validation': 423, 'test': 711},
    'dsprites': {'train': 737280},
    'smallnorb': {'train': 24300, 'test': 24300},
}


def split_size(split: str, sizes: Mapping[str, int]) -> int:
  """Number of examples of a TFDS split string like 'train[:800]+test[100:300]'.

  Supports absolute slices and '+' (what the split tables here use), with Python slice
  semantics (clamped to the split size).
  """
  total = 0
  for part in split.split('+'):
    m = re.fullmatch(r'\s*(\w+)(?:\[(-?\d*):(-?\d*)\])?\s*', part)
    if not m or m.group(1) not in sizes:
      raise ValueError(f'Cannot size split {part!r} with sizes {dict(sizes)}.')
    n = sizes[m.group(1)]
    start = int(m.group(2)) if m.group(2) else 0
    stop = int(m.group(3)) if m.group(3) else n
    total += len(range(n)[start:stop])
  return total


# ----------------------------------------------------------------------------------------
# Label derivations. Each maps a raw TFDS example to {'image': uint8 [H,W,3], 'label': int32}.
# ----------------------------------------------------------------------------------------

def _bin_index(value: tf.Tensor, thresholds, num_classes: int) -> tf.Tensor:
  """Index of the last threshold strictly below `value` (task_adaptation's
  `reduce_max(where(thrs - value < 0))`), clipped to [0, num_classes) so out-of-domain values
  (never seen in the real data) cannot produce labels outside the class range."""
  thrs = tf.constant(thresholds, tf.float32)
  below = tf.reduce_sum(tf.cast(thrs < tf.cast(value, tf.float32), tf.int32))
  return tf.clip_by_value(below - 1, 0, num_classes - 1)


CLEVR_DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_DIST_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
KITTI_NO_VEHICLE_DEPTH = 1000.0  # Depth used when no vehicle is present -> class 3.
KITTI_VEHICLE_TYPES = 3  # TFDS kitti types 0, 1, 2 = Car, Van, Truck.


def clevr_count(example):
  """CLEVR: label = number of objects - 3 (scenes hold 3..10 objects -> 8 classes)."""
  n = tf.size(example['objects']['size'])
  return {'image': to_rgb(example['image']), 'label': tf.cast(n - 3, tf.int32)}


def clevr_distance(example):
  """CLEVR: depth (pixel_coords z) of the closest object, binned at 0, 8, 8.5, ..., 100."""
  depth = tf.reduce_min(example['objects']['pixel_coords'][:, 2])
  return {'image': to_rgb(example['image']),
          'label': _bin_index(depth, CLEVR_DIST_THRESHOLDS, 6)}


def kitti_closest_vehicle(example):
  """KITTI: depth (location z, metres) of the closest Car/Van/Truck binned at -100, 8, 20,
  999; a frame without such a vehicle gets depth 1000, i.e. class 3."""
  objects = example['objects']
  is_vehicle = objects['type'] < KITTI_VEHICLE_TYPES
  depths = tf.boolean_mask(tf.cast(objects['location'][:, 2], tf.float32), is_vehicle)
  depth = tf.reduce_min(tf.concat([depths, [KITTI_NO_VEHICLE_DEPTH]], axis=0))
  return {'image': to_rgb(example['image']),
          'label': _bin_index(depth, KITTI_DIST_THRESHOLDS, 4)}


def _dsprites(attribute: str, num_original: int, num_classes: int):
  factor = num_original / num_classes  # 32 -> 16: 2.0; 40 -> 16: 2.5 (as task_adaptation).

  def fn(example):
    """dSprites: {0,1} grey-scale -> {0,255} RGB; label = floor(attribute / factor)."""
    image = tf.tile(tf.cast(example['image'], tf.uint8), [1, 1, 3]) * 255
    label = tf.math.floordiv(tf.cast(example[attribute], tf.float32), factor)
    return {'image': image, 'label': tf.cast(label, tf.int32)}

  fn.__name__ = f'dsprites_{attribute}'
  return fn


def _smallnorb(attribute: str):
  def fn(example):
    """smallNORB: grey-scale tiled to RGB; label = the raw attribute."""
    return {'image': to_rgb(example['image']), 'label': tf.cast(example[attribute], tf.int32)}

  fn.__name__ = f'smallnorb_{attribute}'
  return fn


dsprites_location = _dsprites('label_x_position', 32, 16)
dsprites_orientation = _dsprites('label_orientation', 40, 16)
smallnorb_azimuth = _smallnorb('label_azimuth')
smallnorb_elevation = _smallnorb('label_elevation')


# ----------------------------------------------------------------------------------------
# Split tables.
# ----------------------------------------------------------------------------------------

def _smallnorb_splits() -> dict[str, str]:
  # task_adaptation: val = test[:50%], test = test[50%:], trainval = train + val.
  half = TFDS_SPLIT_SIZES['smallnorb']['test'] // 2
  return {
      'train800': 'train[:800]', 'val200': 'test[:200]',
      'train800val200': 'train[:800]+test[:200]', 'test': f'test[{half}:]',
      'train': 'train', 'val': f'test[:{half}]', 'trainval': f'train+test[:{half}]',
  }


_N = {k: v['train'] for k, v in TFDS_SPLIT_SIZES.items()}

# (name, builder, group, num_classes, splits, preprocess, extra Task kwargs)
_VTAB = [
    ('cifar100', 'cifar100:3.*.*', 'natural', 100,
     cut_splits(_N['cifar100'], 90, test='test'), None,
     dict(folder_names=('cifar', 'cifar100'))),
    ('caltech101', 'caltech101:3.*.*', 'natural', 102,
     cut_splits(_N['caltech101'], 90, test='test'), None, {}),
    ('dtd', 'dtd:3.*.*', 'natural', 47, standard_splits(), None, {}),
    ('oxford_flowers102', 'oxford_flowers102:2.*.*', 'natural', 102, standard_splits(), None, {}),
    # TFDS >= 4.9 ships only oxford_iiit_pet 4.0.0 (same images, labels and split sizes).
    ('oxford_iiit_pet', 'oxford_iiit_pet:3.*.*', 'natural', 37,
     cut_splits(_N['oxford_iiit_pet'], 80, test='test'), None,
     dict(alt_builders=('oxford_iiit_pet:4.*.*',))),
    ('svhn', 'svhn_cropped:3.*.*', 'natural', 10,
     cut_splits(_N['svhn_cropped'], 90, test='test'), None, {}),
    ('sun397', 'sun397/tfds:4.*.*', 'natural', 397, standard_splits(), None,
     dict(manual_download='SUN397 from https://vision.princeton.edu/projects/2010/SUN/ '
          '(TFDS downloads it itself when the site is reachable)')),
    ('patch_camelyon', 'patch_camelyon:2.*.*', 'specialized', 2, standard_splits(), None, {}),
    ('eurosat', 'eurosat/rgb:2.*.*', 'specialized', 10, cut_splits(_N['eurosat'], 60, 20),
     None, {}),
    ('resisc45', 'resisc45:3.*.*', 'specialized', 45,
     cut_splits(_N['resisc45'], 60, 20), None,
     dict(manual_download='NWPU-RESISC45.rar from https://1drv.ms/u/s!AmgKYzARBl5ca3HNaHIlzp_IXjs '
          '(extract it so that the NWPU-RESISC45/ folder is inside the manual directory)')),
    ('diabetic_retinopathy', 'diabetic_retinopathy_detection/btgraham-300:3.*.*', 'specialized',
     5, standard_splits(), None,
     dict(manual_download='the Kaggle "Diabetic Retinopathy Detection" files (train.zip.*, '
          'test.zip.*, trainLabels.csv.zip, sample.zip) from '
          'https://www.kaggle.com/c/diabetic-retinopathy-detection/data plus '
          'retinopathy_solution.csv, unpacked into the manual directory',
          folder_names=('diabetic_retinopathy', 'diabetic_retinopathy_detection'))),
    ('clevr_count', 'clevr:3.*.*', 'structured', 8,
     cut_splits(_N['clevr'], 90, test='validation'), clevr_count, {}),
    ('clevr_dist', 'clevr:3.*.*', 'structured', 6,
     cut_splits(_N['clevr'], 90, test='validation'), clevr_distance, {}),
    ('dmlab', 'dmlab:2.0.1', 'structured', 6, standard_splits(), None, {}),
    ('kitti', 'kitti:3.*.*', 'structured', 4, standard_splits(), kitti_closest_vehicle, {}),
    ('dsprites_loc', 'dsprites:2.*.*', 'structured', 16, cut_splits(_N['dsprites'], 80, 10),
     dsprites_location, {}),
    ('dsprites_ori', 'dsprites:2.*.*', 'structured', 16, cut_splits(_N['dsprites'], 80, 10),
     dsprites_orientation, {}),
    ('smallnorb_azi', 'smallnorb:2.*.*', 'structured', 18, _smallnorb_splits(),
     smallnorb_azimuth, {}),
    ('smallnorb_ele', 'smallnorb:2.*.*', 'structured', 9, _smallnorb_splits(),
     smallnorb_elevation, {}),
]

VTAB_TASKS = tuple(row[0] for row in _VTAB)


def _sizes(builder: str, splits: Mapping) -> dict[str, int]:
  raw = TFDS_SPLIT_SIZES[builder.split(':')[0].split('/')[0]]
  return {name: split_size(spec, raw) for name, spec in splits.items()}


for _name, _builder, _group, _n, _splits, _pp, _kw in _VTAB:
  _extra = {'preprocess': _pp} if _pp is not None else {}
  register_task(Task(name=_name, builder=_builder, group=_group, num_classes=_n,
                     splits=_splits, split_sizes=_sizes(_builder, _splits), **_extra, **_kw))
