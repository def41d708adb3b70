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

from jpeft.data.quiet_tf import tf, tfds
from jpeft.data.errors import DataError
from jpeft.data.tasks import SplitSpec, Subset, Task

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow with this module


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


def _define_generated_builders() -> None:
  """Registers jpeft's generated tasks' TFDS builders (Mini VTAB), defined only once TFDS is in use."""
  from jpeft.data import mini_manyshot, mini_vtab  # pylint: disable=g-import-not-at-top (they import tasks)
  mini_vtab.define_builders()
  mini_manyshot.define_builder()


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
  _define_generated_builders()
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


# (builder full name, data_dir, split, with ids) -> (labels, source order); the label pass is slow on large
# splits, and every subset of a split (a many-shot size and each of its tuning splits) shares it.
_LABEL_CACHE: dict = {}


def _subset_indices(builder: tfds.core.DatasetBuilder, subset: Subset) -> np.ndarray:
  ids = _uses_index_file(subset) and 'id' in builder.info.features
  key = (builder.info.full_name, str(builder.data_dir), subset.split, ids)
  if key not in _LABEL_CACHE:
    _LABEL_CACHE[key] = _read_labels(builder, subset.split, ids)
  labels, source_order = _LABEL_CACHE[key]
  return select_subset(labels, subset, source_order)


def _uses_index_file(subset: Optional[Subset]) -> bool:
  return subset is not None and (subset.index_file is not None or _uses_index_file(subset.within)
                                 or _uses_index_file(subset.exclude))


def _read_labels(builder: tfds.core.DatasetBuilder, split: str,
                 ids: bool) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """(labels [N] (-1 without a `label` feature), source order [N] or None) of a TFDS split."""
  # Labels (and ids) only: skip image decoding, it is by far the slow part.
  features = builder.info.features
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})
  if 'label' in features:
    labels = np.fromiter((int(x) for x in ds.map(lambda ex: ex['label']).as_numpy_iterator()),
                         dtype=np.int64)
  else:  # e.g. CLEVR, whose labels are derived later: only uniform draws make sense
    labels = np.full([sum(1 for _ in ds)], -1, np.int64)
  source_order = None
  if ids:
    source_order = source_positions([x.decode() for x in ds.map(lambda ex: ex['id']).as_numpy_iterator()])
  return labels, source_order


def source_positions(ids: list[str]) -> np.ndarray:
  """[N] int: TFDS position of the example with source index i, from TFDS ids like 'train_00042'.

  TFDS stores CIFAR shuffled by a hash of the record key, and keeps the position in the original
  binary file as the `id` feature ('train_%05d'). torchvision reads the same images in the same
  order from the python-pickle files, so an index into torchvision's CIFAR is the number in `id`.
  """
  numbers = np.array([int(i.rsplit('_', 1)[-1]) for i in ids], np.int64)
  if sorted(numbers.tolist()) != list(range(len(ids))):
    raise DataError(f'The split\'s `id` values are not a permutation of 0..{len(ids) - 1} (e.g. '
                    f'{ids[:3]}), so indices in source order cannot be mapped to TFDS positions.')
  positions = np.empty(len(ids), np.int64)
  positions[numbers] = np.arange(len(ids))
  return positions


def read_index_file(path: str, num_examples: int, source_order: Optional[np.ndarray] = None
                    ) -> np.ndarray:
  """Sorted TFDS positions of the indices in the `.npy` at `path` (1-D integers in source order,
  mapped with `source_order` [N], see `source_positions`; TFDS order when None)."""
  try:
    index = np.load(path)
  except (OSError, ValueError) as e:
    raise DataError(f"Cannot read the subset index file '{path}': {e}. Give a .npy file of "
                    f"integer indices into the training set (np.save(path, indices)).") from e
  if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
    raise DataError(f"Subset index file '{path}' holds a {index.dtype} array of shape "
                    f"{index.shape}; expected a 1-D array of integer indices into the training set.")
  bad = index[(index < 0) | (index >= num_examples)]
  if len(bad) or len(np.unique(index)) != len(index):
    raise DataError(f"Subset index file '{path}' has {len(bad)} indices outside [0, {num_examples}) "
                    f"(e.g. {bad[:3].tolist()}) or repeated indices ({len(index) - len(np.unique(index))}); "
                    f"it must index distinct examples of this training split ({num_examples}).")
  return np.sort(index if source_order is None else source_order[index])


def select_subset(labels: np.ndarray, subset: Subset,
                  source_order: Optional[np.ndarray] = None) -> np.ndarray:
  """Sorted indices into `labels` ([N] ints; -1 where unknown) drawn as `subset` says (seeded, no replacement),
  only among the indices `subset.within` draws and those of `subset.index_file` (mapped with
  `source_order`, see `read_index_file`), never one that `subset.exclude` draws.

  Per class: `subset.size` examples of every class present (all of them, with a warning,
  where a class has fewer). Size None: every index of the pool.
  """
  rng = np.random.default_rng(subset.seed)
  pool = np.arange(len(labels))
  if subset.within is not None:
    pool = select_subset(labels, subset.within, source_order)
  if subset.index_file is not None:
    pool = np.intersect1d(pool, read_index_file(subset.index_file, len(labels), source_order))
  if subset.exclude is not None:
    excluded = select_subset(labels, subset.exclude, source_order)
    if subset.index_file is not None and len(np.intersect1d(pool, excluded)):
      raise DataError(f"{len(np.intersect1d(pool, excluded))} examples of the subset index file "
                      f"'{subset.index_file}' are in {subset.exclude}, which must stay disjoint from "
                      f"training (e.g. the test set). Remove them from the file.")
    pool = np.setdiff1d(pool, excluded, assume_unique=True)
  if subset.size is None:
    return pool
  if not subset.per_class:
    if subset.size > len(pool):
      raise DataError(f'Subset {subset} asks for {subset.size} examples but the split has '
                      f'only {len(pool)}. Use a smaller size or a larger split.')
    return np.sort(rng.choice(pool, subset.size, replace=False))
  if len(pool) and labels[pool].min() < 0:
    raise DataError(f'Subset {subset} is drawn per class, but the TFDS split has no `label` feature '
                    f'(the task derives its labels). Draw a size in total (per_class=False).')
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
    ds = builder.as_dataset(split=spec.split, shuffle_files=False, read_config=read_config,
                            decoders={'image': tfds.decode.SkipDecoding()})
    # Positions must be those of the label pass, hence no file shuffling here. Images are decoded after
    # the filter: a small subset of a large split decodes only its own images.
    ds = ds.take(len(keep)).enumerate().filter(lambda i, ex: tf.gather(keep_t, i))
    image = builder.info.features['image']

    def decode(i, ex):
      del i
      # Encoded bytes from TFDS files; tfds.testing.mock_data yields decoded images.
      raw = ex['image']
      return {**ex, 'image': image.decode_example(raw) if raw.dtype == tf.string else raw}

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
  else:
    spec = clamp_split(spec, _split_sizes(builder), task.name)
    ds = builder.as_dataset(split=spec, shuffle_files=shuffle_files, read_config=read_config)
  return ds.map(task.preprocess, num_parallel_calls=AUTOTUNE)
