"""Reading a task's split from TFDS: builder lookup, clear errors for missing data, subsets.

Output of `load_tfds`: a tf.data.Dataset of {'image': uint8 [H, W, 3], 'label': int32 []},
image sizes as stored (resizing happens later, in `preprocess.py`).
"""
from __future__ import annotations

import logging
import os
import re
from typing import Optional, Union

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jpeft.data.errors import DataError
from jpeft.data.tasks import SplitSpec, Subset, Task

AUTOTUNE = tf.data.AUTOTUNE


def _data_dir_text(data_dir: Optional[str]) -> str:
  return data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def _missing_message(task: Task, builder_name: str, data_dir: Optional[str], cause: str,
                     tried_download: bool = True) -> str:
  root = _data_dir_text(data_dir)
  dd = f' --data_dir={data_dir}' if data_dir else ''
  name = builder_name.split(':')[0]  # `tfds build` takes name[/config]; newest matching version.
  if task.manual_download:
    how = (f'TFDS cannot download it itself: download {task.manual_download}, put the files in '
           f'{os.path.join(root, "downloads", "manual")} (or pass --manual_dir), then run '
           f'`tfds build {name}{dd}`.')
  else:
    how = (f'Prepare it once on a machine with internet access with `tfds build {name}{dd}` '
           f'and point data_dir at that directory'
           + ('.' if tried_download else ', or pass download=True to let TFDS fetch it.'))
  return (f"Dataset '{builder_name}' for task '{task.name}' is not available in "
          f"data_dir={root}. {how} (TFDS said: {cause.strip().splitlines()[0][:300]})")


def _missing_module_message(task: Task, builder_name: str, error: ImportError) -> str:
  module = getattr(error, 'name', None) or str(error).splitlines()[0]
  return (f"TFDS builder '{builder_name}' for task '{task.name}' needs the Python module "
          f"'{module}', which is not installed. Reinstall jpeft with its dependencies "
          f"(`pip install -e .` in the jpeft checkout; setup.py lists what the VTAB-1K and "
          f"ImageNet builders import), or `pip install` the package that provides '{module}'. "
          f"(Python said: {str(error).splitlines()[0][:300]})")


def make_builder(task: Task, data_dir: Optional[str] = None,
                 download: bool = True) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of `task`, trying `task.builder` then `task.alt_builders`.

  Args:
    task: the task.
    data_dir: TFDS data directory (None: TFDS default, i.e. $TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    download: if the dataset is not prepared in data_dir, let TFDS download and prepare it
      (needs internet, or the manual files for manual datasets). False raises instead.

  Raises:
    DataError: the dataset is not there (and could not be prepared), with instructions; or
      the builder needs a Python module that is not installed, naming it.
  """
  failures = []
  for name in (task.builder,) + tuple(task.alt_builders):
    try:
      builder = tfds.builder(name, data_dir=data_dir)
      break
    except ImportError as e:  # The builder's module imports something not installed.
      raise DataError(_missing_module_message(task, name, e)) from e
    except Exception as e:  # pylint: disable=broad-except  # TFDS raises several types.
      failures.append(f'{name}: {str(e).splitlines()[0][:200]}')
  else:
    raise DataError(
        f"No TFDS builder for task '{task.name}' (tried {', '.join(failures)}). Install a "
        f"tensorflow-datasets version that has it, or, if you built it with another version, "
        f"pass the data_dir that holds the prepared files.")
  if not builder.is_prepared():
    if not download:
      raise DataError(_missing_message(task, name, data_dir, 'not prepared (download=False)',
                                       tried_download=False))
    try:
      builder.download_and_prepare()
    except ImportError as e:  # Not a data problem: downloading again would not help.
      raise DataError(_missing_module_message(task, name, e)) from e
    except Exception as e:  # pylint: disable=broad-except  # network, manual dir, checksum...
      raise DataError(_missing_message(task, name, data_dir, f'{type(e).__name__}: {e}')) from e
  _check_split_sizes(task, builder)
  return builder


def _check_split_sizes(task: Task, builder: tfds.core.DatasetBuilder) -> None:
  """Warns when prepared data has other split sizes than the task's split table assumes."""
  from jpeft.data.vtab import TFDS_SPLIT_SIZES  # pylint: disable=g-import-not-at-top
  expected = TFDS_SPLIT_SIZES.get(task.dataset_name, {})
  try:
    actual = {k: v.num_examples for k, v in builder.info.splits.items()}
  except Exception:  # pylint: disable=broad-except  # Mocked or partial metadata.
    return
  for split, n in expected.items():
    if split in actual and actual[split] and actual[split] != n:
      logging.warning('Task %s: TFDS split %s of %s has %d examples, the split table assumes %d;'
                      ' val200/test cuts may differ from the official VTAB ones.',
                      task.name, split, builder.name, actual[split], n)


# (builder full name, data_dir, subset) -> indices; the label pass is slow on large splits.
_SUBSET_CACHE: dict = {}


def _subset_indices(builder: tfds.core.DatasetBuilder, subset: Subset) -> np.ndarray:
  key = (builder.info.full_name, str(builder.data_dir), subset)
  if key not in _SUBSET_CACHE:
    _SUBSET_CACHE[key] = _draw_subset(builder, subset)
  return _SUBSET_CACHE[key]


def _draw_subset(builder: tfds.core.DatasetBuilder, subset: Subset) -> np.ndarray:
  # Labels only: skip image decoding, it is by far the slow part.
  ds = builder.as_dataset(split=subset.split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  labels = np.fromiter((int(x) for x in ds.map(lambda ex: ex['label']).as_numpy_iterator()),
                       dtype=np.int64)
  return select_subset(labels, subset)


def select_subset(labels: np.ndarray, subset: Subset) -> np.ndarray:
  """Sorted indices into `labels` ([N] ints) drawn as `subset` says (seeded, no replacement),
  never one of the indices `subset.exclude` draws from the same labels.

  Per class: `subset.size` examples of every class present (all of them, with a warning,
  where a class has fewer). Size None: every index not excluded.
  """
  rng = np.random.default_rng(subset.seed)
  pool = np.arange(len(labels))
  if subset.exclude is not None:
    pool = np.setdiff1d(pool, select_subset(labels, subset.exclude), assume_unique=True)
  if subset.size is None:
    return pool
  if not subset.per_class:
    if subset.size > len(pool):
      raise DataError(f'Subset {subset} asks for {subset.size} examples but the split has '
                      f'only {len(pool)}. Use a smaller size or a larger split.')
    return np.sort(rng.choice(pool, subset.size, replace=False))
  chosen = []
  pool_labels = labels[pool]
  for c in np.unique(pool_labels):
    idx = pool[pool_labels == c]
    if len(idx) < subset.size:
      logging.warning('Subset %s: class %d has only %d examples; taking all.', subset, c, len(idx))
      chosen.append(idx)
    else:
      chosen.append(rng.choice(idx, subset.size, replace=False))
  return np.sort(np.concatenate(chosen))


def _split_sizes(builder: tfds.core.DatasetBuilder) -> dict[str, int]:
  try:
    return {k: v.num_examples for k, v in builder.info.splits.items() if v.num_examples}
  except Exception:  # pylint: disable=broad-except  # Mocked or partial metadata.
    return {}


def clamp_split(split: str, sizes: dict[str, int], task_name: str = '') -> str:
  """Clamps absolute slice ends to the split sizes: 'train[:800]' -> 'train[:500]' when TFDS
  `train` has 500 examples (TFDS rejects out-of-range slices; small datasets such as the
  mini-VTAB tasks have fewer than 800 training images). Unknown sizes leave `split` as is."""
  parts = []
  for part in split.split('+'):
    m = re.fullmatch(r'(\w+)\[(\d*):(\d*)\]', part.strip())
    if m and m.group(1) in sizes:
      n = sizes[m.group(1)]
      start, stop = m.group(2), m.group(3)
      if (stop and int(stop) > n) or (start and int(start) > n):
        logging.warning('Task %s: split %s asks beyond the %d examples of %s; clamping.',
                        task_name, part, n, m.group(1))
        stop = str(min(int(stop), n)) if stop else stop
        start = str(min(int(start), n)) if start else start
        part = f'{m.group(1)}[{start}:{stop}]'
    parts.append(part)
  return '+'.join(parts)


def load_tfds(task: Task, split: Union[str, SplitSpec], *, data_dir: Optional[str] = None,
              download: bool = True, shuffle_files: bool = False,
              seed: int = 0) -> tf.data.Dataset:
  """Examples of `task`'s `split` from TFDS: {'image': uint8 [H, W, 3], 'label': int32 []}.

  Args:
    task: the task.
    split: a name from `task.splits` ('train800', 'test', ...) or a `Subset`.
    data_dir: TFDS data directory.
    download: let TFDS download/prepare a missing dataset (see `make_builder`).
    shuffle_files: shuffle the order of the TFRecord files (large training sets).
    seed: file-shuffle seed.
  """
  spec = task.split(split) if isinstance(split, str) else split
  builder = make_builder(task, data_dir, download)
  read_config = tfds.ReadConfig(shuffle_seed=seed)
  if isinstance(spec, Subset):
    idx = _subset_indices(builder, spec)
    keep = np.zeros([int(idx.max()) + 1 if len(idx) else 0], bool)
    keep[idx] = True
    keep_t = tf.constant(keep)
    ds = builder.as_dataset(split=spec.split, shuffle_files=False, read_config=read_config)
    # Positions must be those of the label pass, hence no file shuffling here.
    ds = ds.take(len(keep)).enumerate().filter(lambda i, ex: tf.gather(keep_t, i))
    ds = ds.map(lambda i, ex: ex)
  else:
    spec = clamp_split(spec, _split_sizes(builder), task.name)
    ds = builder.as_dataset(split=spec, shuffle_files=shuffle_files, read_config=read_config)
  return ds.map(task.preprocess, num_parallel_calls=AUTOTUNE)
