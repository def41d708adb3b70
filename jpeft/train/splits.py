"""A run's data splits, in memory (VTAB-1K) or streamed (many-shot), and the order they are batched in."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from jpeft.data import input_pipeline
from jpeft.train.errors import ConfigError


def _data_kwargs(config) -> dict:
  d = config.data
  return dict(data_dir=d.data_dir, source=d.source, folder_root=d.folder_root, image_size=d.image_size,
              normalization=d.normalization)


def load_split(config, task, split: str) -> dict[str, np.ndarray]:
  """{'image': f32 [N, H, W, 3], 'label': i32 [N]} of a whole split, in memory."""
  return input_pipeline.load_split_arrays(task, split, **_data_kwargs(config))


def train_batches(arrays: dict, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
  """The epoch's shuffled batches (drop_last); the order depends only on (seed, epoch), so resuming at an
  epoch boundary replays exactly the batches an uninterrupted run sees."""
  order = np.random.default_rng((seed, epoch)).permutation(len(arrays["label"]))
  for i in range(len(order) // batch_size):
    index = np.sort(order[i * batch_size:(i + 1) * batch_size])  # sorted: faster gather, same batch set
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


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of the run's data, in memory (`config.data.in_memory`, VTAB-1K) or streamed (many-shot).

  Attributes:
    size: number of examples.
    arrays: the whole split when in memory, else None.
    config, task, name: what to stream from otherwise.
  """
  size: int
  arrays: Optional[dict]
  config: Any
  task: Any
  name: str

  @classmethod
  def open(cls, config, task, name: str) -> "Split":
    if config.data.in_memory:
      arrays = load_split(config, task, name)
      return cls(len(arrays["label"]), arrays, config, task, name)
    d = config.data
    size = input_pipeline.num_examples(task, name, source=d.source, data_dir=d.data_dir,
                                       folder_root=d.folder_root)
    return cls(size, None, config, task, name)

  def _stream(self, batch_size: int, train: bool, seed: int) -> Iterator[dict]:
    ds = input_pipeline.get_dataset(self.task, self.name, batch_size=batch_size, train=train, seed=seed,
                                    num_epochs=1, drop_remainder=train,
                                    augment=self.config.data.augment if train else None,
                                    **_data_kwargs(self.config))
    return iter(ds.as_numpy_iterator())

  def train_epoch(self, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
    """Shuffled full batches of one epoch, a function of (seed, epoch) only."""
    if self.arrays is not None:
      return train_batches(self.arrays, batch_size, seed, epoch)
    # The pipeline's shuffling and augmentation are deterministic given its seed.
    return self._stream(batch_size, True, int(np.random.default_rng((seed, epoch)).integers(2**31)))

  def eval_batches(self, batch_size: int) -> Iterator[dict]:
    """Every example once, in order, padded (see `pad_batches`)."""
    if self.arrays is not None:
      n = self.size
      batches = ({k: v[i:i + batch_size] for k, v in self.arrays.items()} for i in range(0, n, batch_size))
    else:
      batches = self._stream(batch_size, False, 0)
    return pad_batches(batches, batch_size)


def count_steps_per_epoch(train_data: Split, batch_size: int, task_name: str) -> int:
  """Full batches per epoch of `train_data` (drop_last); ConfigError naming the batch size if there are none."""
  steps = train_data.size // batch_size
  if steps == 0:
    raise ConfigError(f"Config field 'optim.batch_size' = {batch_size} is larger than the {train_data.name} "
                      f"split of '{task_name}' ({train_data.size} examples), so drop_last leaves no "
                      "batch: lower --config.optim.batch_size.")
  return steps
