"""tf.data input pipelines for every task and source, and the in-memory fast path.

    ds = get_dataset('cifar100', 'train800', batch_size=64, train=True)
    for batch in tfds.as_numpy(ds):   # {'image': float32 [64, 224, 224, 3], 'label': int32 [64]}
      ...

    arrays = load_split_arrays('dtd', 'train800val200')   # whole split as numpy, once

Sources: 'tfds' (the registered task's TFDS builder), 'folder' (VTAB-1K processed lists,
`<folder_root>/<task>/<split>.txt`) and 'imagefolder' (`<folder_root>/<task>/<split>/<class>/`).
Preprocessing defaults to the study's VTAB-1K recipe: bicubic resize to 224, pixels in [0, 1].
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

import numpy as np

from jpeft.data.quiet_tf import tf, tfds
from jpeft.data import folder_source, preprocess, tfds_source
from jpeft.data.bad_images import BadImage
from jpeft.data.errors import DataError
from jpeft.data.tasks import SplitSpec, Subset, Task, get_task

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow with this module
SOURCES = ('tfds', 'folder', 'imagefolder')
# Decoded examples of splits up to this size are cached in memory after the first epoch.
CACHE_MAX_EXAMPLES = 20_000


def _check_source(source: str) -> None:
  if source not in SOURCES:
    raise DataError(f"Unknown source '{source}'. Use 'tfds' (TFDS builders in data_dir), "
                    f"'folder' (VTAB-1K processed folders with train800.txt etc. under "
                    f"folder_root) or 'imagefolder' (folder_root/<task>/<split>/<class>/...).")


def _split_key(split: Union[str, Subset]) -> str:
  return split if isinstance(split, str) else str(split)


@dataclasses.dataclass(frozen=True)
class Examples:
  """One opened split (`open_examples`).

  Attributes:
    dataset: {'image': uint8 [H, W, 3], 'label': int32 []} per example.
    size: number of examples, None if unknown without reading them (some TFDS splits).
    skipped: the bad images left out (folder sources with skip_bad_images=True), in split order.
  """
  dataset: tf.data.Dataset
  size: Optional[int]
  skipped: tuple[BadImage, ...] = ()


def open_examples(task: Union[str, Task], split: Union[str, SplitSpec], *,
                  source: str = 'tfds', data_dir: Optional[str] = None,
                  folder_root: Optional[str] = None, download: bool = True,
                  shuffle_files: bool = False, seed: int = 0,
                  skip_bad_images: bool = False) -> Examples:
  """Undecorated examples of one split, their number and the images left out.

  `shuffle_files`: TFDS: shuffle the record files; folders: reshuffle the file list each
  epoch (both seeded with `seed`). Otherwise examples come in split order.

  Folder sources decode every image once here (`jpeft.data.bad_images`): a missing, non-image
  or corrupt file is a DataError naming it (and its line in the list file), raised before any
  training; `skip_bad_images=True` leaves such files out instead, with a warning naming them.
  TFDS data were checked when the dataset was prepared; `skip_bad_images` does not apply.
  """
  _check_source(source)
  shuffle = seed if shuffle_files else None  # Folder sources: shuffle file names per epoch.
  if source == 'imagefolder':
    name = task.name if isinstance(task, Task) else task
    task_dir = folder_source.find_task_dir(folder_root, [name])
    files = folder_source.image_folder_split(task_dir, _split_key(split), skip_bad_images)
  elif source == 'folder':
    task = get_task(task)
    if not isinstance(split, str):
      raise DataError(f'Subsets ({split}) need source="tfds"; processed folders hold fixed lists.')
    task_dir = folder_source.find_task_dir(folder_root, task.folder_candidates)
    files = folder_source.processed_split(task_dir, split, task.num_classes, skip_bad_images)
  else:
    task = get_task(task)
    ds = tfds_source.load_tfds(task, split, data_dir=data_dir, download=download,
                               shuffle_files=shuffle_files, seed=seed)
    return Examples(ds, task.split_sizes.get(split) if isinstance(split, str) else None)
  return Examples(folder_source.files_dataset(files.paths, files.labels, shuffle), len(files.paths),
                  files.skipped)


def load_examples(task: Union[str, Task], split: Union[str, SplitSpec], *,
                  source: str = 'tfds', data_dir: Optional[str] = None,
                  folder_root: Optional[str] = None, download: bool = True,
                  shuffle_files: bool = False, seed: int = 0, skip_bad_images: bool = False
                  ) -> tuple[tf.data.Dataset, Optional[int]]:
  """`open_examples`' (dataset of {'image': uint8 [H, W, 3], 'label': int32 []}, number of
  examples or None)."""
  examples = open_examples(task, split, source=source, data_dir=data_dir, folder_root=folder_root,
                           download=download, shuffle_files=shuffle_files, seed=seed,
                           skip_bad_images=skip_bad_images)
  return examples.dataset, examples.size


def num_examples(task: Union[str, Task], split: Union[str, SplitSpec], *, source: str = 'tfds',
                 data_dir: Optional[str] = None, folder_root: Optional[str] = None,
                 skip_bad_images: bool = False) -> int:
  """Number of examples in a split (from the split table, the list file or TFDS metadata); for
  folder sources, after checking every image (see `open_examples`)."""
  _check_source(source)
  if source == 'tfds':
    task = get_task(task)
    if isinstance(split, str) and split in task.split_sizes:
      return task.split_sizes[split]
    spec = task.split(split) if isinstance(split, str) else split
    builder = tfds_source.make_builder(task, data_dir, download=False)
    if isinstance(spec, Subset):
      return len(tfds_source._subset_indices(builder, spec))  # pylint: disable=protected-access
    spec = tfds_source.clamp_split(spec, tfds_source._split_sizes(builder), task.name)  # pylint: disable=protected-access
    return builder.info.splits[spec].num_examples
  _, size = load_examples(task, split, source=source, folder_root=folder_root,
                          skip_bad_images=skip_bad_images)
  return size


def num_classes(task: Union[str, Task], *, source: str = 'tfds',
                folder_root: Optional[str] = None) -> int:
  """Number of classes: the task's, or the number of class folders for 'imagefolder'."""
  _check_source(source)
  if source == 'imagefolder':
    name = task.name if isinstance(task, Task) else task
    return len(folder_source.image_folder_classes(folder_source.find_task_dir(folder_root, [name])))
  return get_task(task).num_classes


def get_dataset(task: Union[str, Task], split: Union[str, SplitSpec], *, batch_size: int,
                train: bool, data_dir: Optional[str] = None, source: str = 'tfds',
                folder_root: Optional[str] = None, image_size: int = 224,
                normalization: str = 'none', seed: int = 0,
                drop_remainder: Optional[bool] = None, augment: Optional[str] = None,
                center_crop: bool = False, num_epochs: Optional[int] = None,
                shard_index: int = 0, num_shards: int = 1, shuffle_buffer: int = 10_000,
                cache: Optional[bool] = None, download: bool = True,
                resize_method: str = 'bicubic', extra: preprocess.TrainAugment = preprocess.TrainAugment(),
                eval_resize: str = 'short_side', skip_bad_images: bool = False,
                examples: Optional[Examples] = None) -> tf.data.Dataset:
  """Batched, preprocessed examples of one split.

  Args:
    task: registered task name (or `Task`); any folder name for source='imagefolder'.
    split: 'train800', 'val200', 'train800val200', 'test', 'train', 'val', 'trainval', ...
      (see `get_task(task).splits`), or a `Subset` (source='tfds').
    batch_size: examples per batch (per shard).
    train: shuffle, repeat and augment; else one ordered pass without augmentation.
    data_dir: TFDS data directory (source='tfds').
    source: 'tfds' | 'folder' | 'imagefolder'.
    folder_root: directory holding `<task>/` for the folder sources.
    image_size: output side length.
    normalization: 'none' ([0, 1]), 'inception' ([-1, 1]), 'imagenet', 'clip'.
    seed: seed of shuffling, file order and augmentation.
    drop_remainder: drop the last partial batch; default: `train`.
    augment: training augmentation, '+'-joined from 'rrc', 'hflip', 'vflip', 'randaug'
      (None: none, the study's VTAB-1K recipe).
    center_crop: at eval, resize short side to image_size*256/224 and centre-crop.
    num_epochs: passes over the data; None: forever when training, once otherwise.
    shard_index, num_shards: keep every num_shards-th example starting at shard_index
      (one shard per host).
    shuffle_buffer: shuffle buffer size (training).
    cache: cache decoded examples in memory; default: when the split has at most
      CACHE_MAX_EXAMPLES examples.
    download: let TFDS download/prepare a missing dataset (source='tfds').
    resize_method: tf.image.resize method.
    extra: RandAugment policy, colour jitter and random erasing of augmented images.
    eval_resize: 'short_side' or 'square' resize before the eval centre crop.
    skip_bad_images: folder sources: leave out images that do not decode (see `open_examples`).
    examples: the split already opened by `open_examples` (e.g. to read its `skipped`), used
      instead of opening it again (its file order stays as opened).

  Returns:
    tf.data.Dataset of {'image': float32 [B, image_size, image_size, 3], 'label': int32 [B]};
    iterate as numpy with `tfds.as_numpy(ds)`.
  """
  preprocess.check_normalization(normalization)
  preprocess.parse_augment(augment)  # Fail early on typos.
  if not 0 <= shard_index < num_shards:
    raise DataError(f'shard_index={shard_index} must be in [0, num_shards={num_shards}).')
  if examples is None:
    examples = open_examples(task, split, source=source, data_dir=data_dir,
                             folder_root=folder_root, download=download, shuffle_files=train,
                             seed=seed, skip_bad_images=skip_bad_images)
  ds, size = examples.dataset, examples.size
  if num_shards > 1:
    ds = ds.shard(num_shards, shard_index)
  if cache if cache is not None else (size is not None and size <= CACHE_MAX_EXAMPLES):
    ds = ds.cache()
  if train:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  epochs = num_epochs if num_epochs is not None else (None if train else 1)
  if epochs != 1:
    ds = ds.repeat(epochs)

  def pp(index, example):
    # A distinct stateless seed per element (the index runs across epochs), so augmentation
    # is reproducible for a given `seed` whatever the thread scheduling.
    ex_seed = tf.stack([tf.cast(seed, tf.int64), index])
    image = preprocess.preprocess_image(
        example['image'], image_size=image_size, normalization=normalization, train=train,
        augment=augment, center_crop_eval=center_crop, resize_method=resize_method,
        seed=tf.cast(ex_seed % (2**31 - 1), tf.int32), extra=extra, eval_resize=eval_resize)
    return {'image': image, 'label': example['label']}

  ds = ds.enumerate().map(pp, num_parallel_calls=AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train if drop_remainder is None else drop_remainder)
  return ds.prefetch(AUTOTUNE)


def load_split_arrays(task: Union[str, Task], split: Union[str, SplitSpec], *,
                      data_dir: Optional[str] = None, source: str = 'tfds',
                      folder_root: Optional[str] = None, image_size: int = 224,
                      normalization: str = 'none', center_crop: bool = False,
                      download: bool = True, resize_method: str = 'bicubic',
                      batch_size: int = 256, cache_dir: Optional[str] = None,
                      eval_resize: str = 'short_side', skip_bad_images: bool = False,
                      examples: Optional[Examples] = None) -> dict[str, np.ndarray]:
  """A whole split, preprocessed once, as arrays (the fast path for VTAB-1K-sized splits).

  1,000 images at 224x224 are 600 MB of float32: small enough to keep on the devices, so
  training never waits on the host. No augmentation (the study's VTAB-1K recipe has none).

  Args:
    cache_dir: if set, the arrays are saved there as .npy on first use and read back (memory-
      mapped) afterwards, so a sweep of many trainings preprocesses each split once. The file
      name encodes task, split, source, preprocessing and skip_bad_images; delete the files if
      the data change.
    (other arguments as in `get_dataset`)

  Returns:
    {'image': float32 [N, image_size, image_size, 3], 'label': int32 [N]} in split order.
  """
  if cache_dir:
    name = getattr(task, 'name', task)
    key = '_'.join(str(x) for x in (name, _split_key(split), source, image_size, normalization,
                                     ('cc' if eval_resize == 'short_side' else 'ccsq') if center_crop else 'rs',
                                     resize_method))
    key += '_skip' if skip_bad_images else ''  # Without the bad files: not what a strict run reads.
    key = ''.join(c if c.isalnum() or c in '_-.' else '-' for c in key)
    paths = {k: os.path.join(cache_dir, f'{key}.{k}.npy') for k in ('image', 'label')}
    if all(os.path.exists(p) for p in paths.values()):
      return {k: np.load(p, mmap_mode='r') for k, p in paths.items()}
    arrays = load_split_arrays(task, split, data_dir=data_dir, source=source,
                               folder_root=folder_root, image_size=image_size,
                               normalization=normalization, center_crop=center_crop,
                               download=download, resize_method=resize_method,
                               batch_size=batch_size, eval_resize=eval_resize,
                               skip_bad_images=skip_bad_images, examples=examples)
    os.makedirs(cache_dir, exist_ok=True)
    for k, p in paths.items():  # Write then rename: readers never see a partial file.
      tmp = f'{p}.tmp{os.getpid()}.npy'
      np.save(tmp, arrays[k])
      os.replace(tmp, p)
    return arrays
  ds = get_dataset(task, split, batch_size=batch_size, train=False, data_dir=data_dir,
                   source=source, folder_root=folder_root, image_size=image_size,
                   normalization=normalization, center_crop=center_crop, num_epochs=1,
                   drop_remainder=False, download=download, resize_method=resize_method,
                   cache=False, eval_resize=eval_resize, skip_bad_images=skip_bad_images,
                   examples=examples)
  images, labels = [], []
  for batch in tfds.as_numpy(ds):
    images.append(batch['image'])
    labels.append(batch['label'])
  if not images:
    raise DataError(f"Split '{_split_key(split)}' of task '{getattr(task, 'name', task)}' is "
                    f"empty (source={source}).")
  return {'image': np.concatenate(images).astype(np.float32, copy=False),
          'label': np.concatenate(labels).astype(np.int32, copy=False)}
