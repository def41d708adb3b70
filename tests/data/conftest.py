"""Shared helpers for the data tests: consistent fake CLEVR / KITTI objects under mock_data."""
import numpy as np
import pytest
import tensorflow as tf


def fake_objects_dataset(kind: str, num_examples: int = 6, seed: int = 0):
  """A tfds-style dataset of raw CLEVR or KITTI examples whose object lists are consistent
  (`tfds.testing.mock_data` draws every sequence with an independent random length, which
  real data never has: CLEVR holds 3..10 objects, KITTI one type per location)."""
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(num_examples):
    image = rng.integers(0, 256, size=(rng.integers(8, 40), rng.integers(8, 40), 3), dtype=np.uint8)
    if kind == 'clevr':
      n = int(rng.integers(3, 11))
      objects = {'size': rng.integers(0, 2, n).astype(np.int64),
                 'pixel_coords': np.stack([rng.random(n) * 480, rng.random(n) * 320,
                                           7 + rng.random(n) * 6], 1).astype(np.float32)}
    else:
      n = int(rng.integers(0, 6))
      objects = {'type': rng.integers(0, 8, n).astype(np.int64),
                 'location': (rng.random((n, 3)) * 40).astype(np.float32)}
    examples.append({'image': image, 'objects': objects})
  spec = {'image': tf.TensorSpec([None, None, 3], tf.uint8),
          'objects': {k: tf.TensorSpec([None] + list(v.shape[1:]), tf.as_dtype(v.dtype))
                      for k, v in examples[0]['objects'].items()}}
  return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=spec)


@pytest.fixture
def objects_as_dataset_fn():
  """as_dataset_fn for tfds.testing.mock_data that serves consistent CLEVR/KITTI examples."""
  def as_dataset_fn(builder, split, decoders=None, read_config=None, **kwargs):
    del split, decoders, read_config, kwargs
    return fake_objects_dataset('clevr' if builder.name == 'clevr' else 'kitti')
  return as_dataset_fn
