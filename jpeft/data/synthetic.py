"""A VTAB-1K-shaped task made in memory with numpy: benchmarks on a machine without TensorFlow, TFDS or data.

    task = synthetic.register(num_classes=10, test_size=500)          # 'synthetic', with its split sizes
    arrays = synthetic.make_splits(image_size=224, num_classes=10)     # {split: {'image', 'label'}}
    cache = splits.in_memory_cache(config, task, arrays)               # what protocol.run_sweep(data=...) reads

Each image is a sinusoidal grating whose orientation is its class (num_classes angles over 180 degrees), with a
random frequency, phase and colour and pixel noise, so that a model can learn the task (accuracies are not
meaningless) and every class is equally hard. Splits as VTAB-1K's: train800, val200, train800val200 (the two
together), test; float32 [N, image_size, image_size, 3] in [0, 1] (jpeft's preprocessing with normalization
'none') and int32 labels. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import numpy as np

from jpeft.data.tasks import Task, register_task

NAME = "synthetic"
_CHUNK = 100  # images made at once: bounds the float temporaries at 224 px


def register(num_classes: int = 10, test_size: int = 500) -> Task:
  """Registers (idempotently) and returns the task `synthetic` with these sizes, for jpeft's registry."""
  sizes = {"train800": 800, "val200": 200, "train800val200": 1000, "test": test_size}
  # `builder` is never read: every split comes from `make_splits` through a split cache.
  return register_task(Task(name=NAME, builder="jpeft_synthetic_in_memory", num_classes=num_classes,
                            group="synthetic", split_sizes=sizes), overwrite=True)


def _images(rng: np.random.Generator, labels: np.ndarray, size: int, num_classes: int) -> np.ndarray:
  coords = (np.arange(size, dtype=np.float32) / size - 0.5)[None, :]
  out = np.empty((len(labels), size, size, 3), np.float32)
  for start in range(0, len(labels), _CHUNK):
    y = labels[start:start + _CHUNK]
    n = len(y)
    angle = np.pi * (y + rng.uniform(-0.2, 0.2, n)) / num_classes
    freq = rng.uniform(4.0, 12.0, n) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, n)
    along = (np.cos(angle)[:, None, None] * coords[:, None, :] + np.sin(angle)[:, None, None] * coords[:, :, None])
    wave = 0.5 + 0.5 * np.sin(freq[:, None, None] * along + phase[:, None, None])  # [n, H, W]
    colour = rng.uniform(0.3, 1.0, (n, 1, 1, 3)).astype(np.float32)
    noise = rng.normal(0, 0.15, (n, size, size, 3)).astype(np.float32)
    out[start:start + n] = np.clip(wave[..., None].astype(np.float32) * colour + noise, 0.0, 1.0)
  return out


def make_splits(image_size: int = 224, num_classes: int = 10, test_size: int = 500,
                seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """{'train800', 'val200', 'train800val200', 'test': {'image': f32 [N, S, S, 3], 'label': i32 [N]}}, from `seed`
  (train800val200 is train800 then val200, as VTAB-1K's)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, n in (("train800", 800), ("val200", 200), ("test", test_size)):
    labels = np.arange(n, dtype=np.int32) % num_classes  # balanced
    labels = rng.permutation(labels)
    out[name] = {"image": _images(rng, labels, image_size, num_classes), "label": labels}
  out["train800val200"] = {k: np.concatenate([out["train800"][k], out["val200"][k]]) for k in ("image", "label")}
  return out
