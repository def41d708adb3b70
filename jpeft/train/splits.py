"""A run's data splits, in memory (VTAB-1K) or streamed (many-shot), and the order they are batched in.

Which splits a mode uses (`mode_splits`): VTAB-1K's train800 -> val200 (tune) and train800val200 -> test (final),
or, with `config.data.subset` set, a many-shot size's tuning split and its subset (`jpeft.data.manyshot`).

Streaming: a split too large for device memory is decoded once into a uint8 array on host disk (a memory-mapped
`.npy` under `data.stream_cache_dir`, images at their stored size) and each epoch is a tf.data pipeline that
gathers the epoch's examples in the same (seed, epoch) order as the in-memory path, preprocesses (resize,
augment, normalise) in parallel and prefetches. Without augmentation both paths give the same batches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any, Iterable, Iterator, Optional

import numpy as np
from absl import logging

from jpeft.data import input_pipeline, manyshot, preprocess
from jpeft.data.bad_images import BadImage, BadImagesError
from jpeft.data.errors import DataError
from jpeft.train.config_checks import SPLITS
from jpeft.train.errors import ConfigError


def _source_kwargs(config) -> dict:
  d = config.data
  return dict(data_dir=d.data_dir, source=d.source, folder_root=d.folder_root, skip_bad_images=d.skip_bad_images)


def _data_kwargs(config) -> dict:
  d = config.data
  return dict(_source_kwargs(config), image_size=d.image_size, normalization=d.normalization,
              center_crop=d.center_crop, eval_resize=d.eval_resize)


def mode_splits(config, mode: Optional[str] = None) -> tuple[tuple[str, Any], tuple[str, Any]]:
  """((train name, split spec), (eval name, split spec)) that `mode` (default `config.mode`) trains and
  evaluates on; a spec is a task split name or a `jpeft.data.Subset`."""
  mode = mode or config.mode
  d = config.data
  if not d.subset:
    train, evaluate = SPLITS[mode]
    return (train, train), (evaluate, evaluate)
  return manyshot.get_many_shot(config.task).splits(d.subset, mode, d.tune_split, d.subset_index_file)


def num_tune_splits(config, task: Optional[str] = None) -> int:
  """Tuning splits whose val accuracies selection averages: the many-shot size's (5 for the smallest) on `task`
  (default config.task), else 1."""
  if not config.data.subset:
    return 1
  return manyshot.get_many_shot(task or config.task).size(config.data.subset).tune_splits


def _train_augment(config, mode: str) -> Optional[str]:
  d = config.data
  return None if d.augment_final_only and mode != "final" else d.augment


def in_memory_cache(config, task, arrays: dict) -> dict:
  """A split cache for `open_mode` (and `protocol.run_sweep(data=...)`) holding `arrays` ({split name: {'image':
  f32 [N, H, W, 3] already preprocessed, 'label': i32 [N]}}) as the splits of every mode: data made in memory
  (`jpeft.data.synthetic`), read without loading anything (and without training augmentation)."""
  cache = {}
  for mode in SPLITS:
    (train_name, _), (eval_name, _) = mode_splits(config, mode)
    for name, augment in ((train_name, _train_augment(config, mode)), (eval_name, None)):
      if name in arrays:
        cache[(task.name, name, augment)] = Split(len(arrays[name]["label"]), name, arrays[name], None, config)
  return cache


def open_mode(config, task, mode: str, cache: Optional[dict] = None) -> tuple["Split", "Split"]:
  """(train, eval) Splits of `mode`; the train split is augmented with `data.augment` unless
  `data.augment_final_only` and mode is not 'final'. `cache` ({key: Split}) shares opened splits. Bad images
  in either split are one BadImagesError naming those of both."""
  (train_name, train_spec), (eval_name, eval_spec) = mode_splits(config, mode)
  augment = _train_augment(config, mode)
  cache = {} if cache is None else cache
  keys, bad = [], []
  for name, spec, aug in ((train_name, train_spec, augment), (eval_name, eval_spec, None)):
    keys.append((task.name, name, aug))
    if keys[-1] not in cache:
      try:
        cache[keys[-1]] = Split.open(config, task, name, spec, aug)
      except BadImagesError as e:  # check the other split too: one message names every bad file of the run
        bad.append(e)
  if bad:
    raise BadImagesError.combine(bad)
  return cache[keys[0]], cache[keys[1]]


def load_split(config, task, split, examples: Optional[input_pipeline.Examples] = None) -> dict[str, np.ndarray]:
  """{'image': f32 [N, H, W, 3], 'label': i32 [N]} of a whole split (name or Subset), in memory; `examples`: the
  split already opened (`input_pipeline.open_examples`)."""
  return input_pipeline.load_split_arrays(task, split, examples=examples, **_data_kwargs(config))


def epoch_order(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """int [steps * batch_size]: the epoch's example indices, batch after batch (drop_last), each batch sorted
  (faster gathers, same batch set). A function of (seed, epoch) only, so resuming at an epoch boundary replays
  exactly the batches an uninterrupted run sees."""
  order = np.random.default_rng((seed, epoch)).permutation(num_examples)
  steps = num_examples // batch_size
  return np.sort(order[:steps * batch_size].reshape(steps, batch_size), axis=1).reshape(-1)


def train_batches(arrays: dict, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
  """The epoch's shuffled batches of in-memory `arrays` (see `epoch_order`)."""
  order = epoch_order(len(arrays["label"]), batch_size, seed, epoch)
  for i in range(0, len(order), batch_size):
    index = order[i:i + batch_size]
    yield {k: v[index] for k, v in arrays.items()}


def pad_batches(batches: Iterable[dict], batch_size: int) -> Iterator[dict]:
  """Pads each batch to `batch_size` rows and adds 'mask' (bool [batch_size], False on padding), so every
  eval batch has one shape (one compilation) that splits evenly over the devices."""
  for batch in batches:
    real = len(batch["label"])
    padded = {k: np.concatenate([v, np.zeros((batch_size - real, *v.shape[1:]), v.dtype)])
              for k, v in batch.items()}
    padded["mask"] = np.arange(batch_size) < real
    yield padded


def _stream_cache_path(config, task, spec) -> str:
  d = config.data
  index_file = getattr(spec, "index_file", None) or d.subset_index_file
  stamp = os.path.getmtime(index_file) if index_file and os.path.exists(index_file) else None
  key = repr((task.name, str(spec), d.source, d.data_dir, d.folder_root, stamp)
             + (("skip_bad_images",) if d.skip_bad_images else ()))  # without the bad files: another set
  root = d.stream_cache_dir or os.path.join(tempfile.gettempdir(), "jpeft_stream")
  return os.path.join(root, f"{task.name}_{hashlib.sha1(key.encode()).hexdigest()[:16]}")


class _SizesDiffer(Exception):
  """An image of another size than the first: store them padded, with their sizes."""


def _write_images(ds, path: str, size: int, shape: tuple) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Writes the images into an uint8 [size, *shape] memmap at `path` (top-left, when `sizes` are kept); returns
  (labels [size], sizes [size, 2] or None). `shape` None: the first image's, raising _SizesDiffer on another."""
  images, labels, sizes = None, np.zeros([size], np.int32), np.zeros([size, 2], np.int64)
  count = 0
  for example in ds.as_numpy_iterator():
    image = example["image"]
    if images is None:
      images = np.lib.format.open_memmap(path, "w+", np.uint8, (size, *(shape or image.shape)))
    if count >= size:
      raise DataError(f"A streamed split yielded more than the {size} examples counted.")
    if shape is None and image.shape != images.shape[1:]:
      raise _SizesDiffer()
    images[count, :image.shape[0], :image.shape[1]] = image
    labels[count], sizes[count] = example["label"], image.shape[:2]
    count += 1
  if images is None or count != size:
    raise DataError(f"A streamed split yielded {count} examples, {size} expected.")
  images.flush()
  return labels, (sizes if shape is not None else None)


def decode_to_disk(config, task, spec) -> tuple[dict[str, np.ndarray], tuple[BadImage, ...]]:
  """({'image': uint8 [N, H, W, 3] (memory-mapped), 'label': int32 [N]}, the bad images left out) of a split,
  decoded once into `data.stream_cache_dir` and read back from there afterwards (written under temporary names,
  then renamed). Images of different sizes are stored top-left in an array of the largest, with 'size':
  int [N, 2] (h, w)."""
  path = _stream_cache_path(config, task, spec)
  files = {k: f"{path}.{k}.npy" for k in ("image", "label", "size")}
  skipped_file = f"{path}.skipped.json"
  if os.path.exists(files["image"]):  # written last: the others are complete
    skipped = ()
    if os.path.exists(skipped_file):
      with open(skipped_file) as f:
        skipped = tuple(BadImage(**b) for b in json.load(f))
    return {k: np.load(f, mmap_mode="r") for k, f in files.items() if os.path.exists(f)}, skipped
  examples = input_pipeline.open_examples(task, spec, **_source_kwargs(config))
  ds = examples.dataset
  size = examples.size if examples.size is not None else input_pipeline.num_examples(task, spec, **_source_kwargs(config))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = {k: f"{path}.tmp{os.getpid()}.{k}.npy" for k in files}
  tmp_skipped = f"{path}.tmp{os.getpid()}.skipped.json"
  if examples.skipped:
    with open(tmp_skipped, "w") as f:
      json.dump([b.to_json() for b in examples.skipped], f)
  try:
    labels, sizes = _write_images(ds, tmp["image"], size, None)
  except _SizesDiffer:  # e.g. VTAB-1K's DTD: a pass for the largest size, then one to write
    largest = np.max([example["image"].shape for example in ds.as_numpy_iterator()], axis=0)
    labels, sizes = _write_images(ds, tmp["image"], size, tuple(int(n) for n in largest))
    np.save(tmp["size"], sizes)
  np.save(tmp["label"], labels)
  if examples.skipped:
    os.replace(tmp_skipped, skipped_file)
  for k in ("size", "label", "image"):  # image last: its presence marks a complete set
    if sizes is not None or k != "size":
      os.replace(tmp[k], files[k])
  return decode_to_disk(config, task, spec)


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of the run's data, in memory (`config.data.in_memory`, VTAB-1K) or streamed (many-shot).

  Attributes:
    size: number of examples.
    name: what results call it ('val200', 'train500_val0', 'test').
    arrays: the whole split, preprocessed, when in memory, else None.
    raw: when streamed: `decode_to_disk`'s arrays, else None.
    config: the run's config (preprocessing).
    augment: training augmentation of the streamed path (None: none).
    skipped: the bad images left out (`data.skip_bad_images`).
    warnings: what is odd about the split (one label only), also logged when it is opened.
  """
  size: int
  name: str
  arrays: Optional[dict]
  raw: Optional[dict]
  config: Any
  augment: Optional[str] = None
  skipped: tuple[BadImage, ...] = ()
  warnings: tuple[str, ...] = ()

  @classmethod
  def open(cls, config, task, name: str, spec: Any = None, augment: Optional[str] = None) -> "Split":
    """Split `name` of `task`, read as `spec` (a split name or Subset; default `name`). A folder source's bad
    image is a DataError here, before anything trains (see `jpeft.data.bad_images`)."""
    spec = name if spec is None else spec
    if config.data.in_memory:
      examples = input_pipeline.open_examples(task, spec, **_source_kwargs(config))
      arrays, raw, skipped = load_split(config, task, spec, examples), None, examples.skipped
    else:
      arrays, (raw, skipped) = None, decode_to_disk(config, task, spec)
    labels = (arrays or raw)["label"]
    return cls(len(labels), name, arrays, raw, config, augment, skipped, _single_label(labels, name, task.name))

  def _stream(self, index: np.ndarray, batch_size: int, train: bool, seed: int) -> Iterator[dict]:
    """Batches of the examples at `index`, in that order, through tf.data (parallel preprocessing, prefetch)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    d, raw = self.config.data, self.raw
    augment = self.augment if train else None
    labels = tf.constant(np.asarray(raw["label"]))

    sizes = raw.get("size")

    def load(i):
      if sizes is None:
        return np.asarray(raw["image"][i])
      return np.asarray(raw["image"][i, :sizes[i][0], :sizes[i][1]])

    def pp(k, i):
      image = tf.numpy_function(load, [i], tf.uint8, stateful=False)
      image.set_shape(raw["image"].shape[1:] if sizes is None else (None, None, 3))
      # A distinct stateless seed per element, as `input_pipeline.get_dataset`.
      ex_seed = tf.cast(tf.stack([tf.constant(seed, tf.int64), k]) % (2**31 - 1), tf.int32)
      image = preprocess.preprocess_image(image, image_size=d.image_size, normalization=d.normalization,
                                          train=augment is not None, augment=augment,
                                          center_crop_eval=d.center_crop, seed=ex_seed,
                                          extra=preprocess.TrainAugment.from_config(d), eval_resize=d.eval_resize)
      return {"image": image, "label": tf.gather(labels, i)}

    ds = tf.data.Dataset.from_tensor_slices(index.astype(np.int64)).enumerate()
    ds = ds.map(pp, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()

  def train_epoch(self, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
    """Shuffled full batches of one epoch, a function of (seed, epoch) only (see `epoch_order`)."""
    if self.arrays is not None:
      return train_batches(self.arrays, batch_size, seed, epoch)
    order = epoch_order(self.size, batch_size, seed, epoch)
    return self._stream(order, batch_size, True, int(np.random.default_rng((seed, epoch)).integers(2**31)))

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    """Every example once, in order, padded (see `pad_batches`)."""
    if self.arrays is not None:
      n = self.size
      batches = ({k: v[i:i + batch_size] for k, v in self.arrays.items()} for i in range(0, n, batch_size))
    else:
      batches = self._stream(np.arange(self.size), batch_size, False, 0)
    return pad_batches(batches, batch_size)


def _single_label(labels: np.ndarray, split: str, task: str) -> tuple[str, ...]:
  """A warning (logged, and returned for the result) when every example of the split has the same label."""
  values = np.unique(np.asarray(labels))
  if len(labels) < 2 or len(values) != 1:
    return ()
  warning = (f"Every example of split '{split}' of task '{task}' has label {int(values[0])}: a model trained or "
             "scored on it learns or shows nothing. Check the list file's labels or the class folders.")
  logging.warning("%s", warning)
  return (warning,)


def skipped_images(*splits: Split) -> dict:
  """{'count': n, 'files': [{'split', 'path', 'reason', 'list_file', 'line'}, ...]} of the bad images the splits
  left out (`data.skip_bad_images`), each split once: what result.json records."""
  files = [dict(split=s.name, **b.to_json()) for s in {id(s): s for s in splits}.values() for b in s.skipped]
  return dict(count=len(files), files=files)


def split_warnings(*splits: Split) -> list[str]:
  """The splits' warnings, each split once."""
  return [w for s in {id(s): s for s in splits}.values() for w in s.warnings]


def count_steps_per_epoch(train_data: Split, batch_size: int, task_name: str) -> int:
  """Full batches per epoch of `train_data` (drop_last); ConfigError naming the batch size if there are none."""
  steps = train_data.size // batch_size
  if steps == 0:
    raise ConfigError(f"Config field 'optim.batch_size' = {batch_size} is larger than the {train_data.name} "
                      f"split of '{task_name}' ({train_data.size} examples), so drop_last leaves no "
                      "batch: lower --config.optim.batch_size.")
  return steps
