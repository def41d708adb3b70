"""How long the bad-image check takes on a VTAB-1K-sized split (issue 28, docs/notes/28-images.md).

  python experiments/time_image_check.py [--repeats=3]

Writes 1,000 JPEGs of 500x375 pixels (the size of a typical Caltech-101 / DTD photo) and 1,000 PNGs of 32x32
(CIFAR) into a temporary folder, then times `jpeft.data.bad_images.find_bad_images` on each set (wall and CPU
seconds of this process), and once more with 10 of the JPEGs corrupted, which adds the per-file diagnosis.
"""
import os
import resource
import sys
import tempfile
import time

import numpy as np

from jpeft.data import bad_images
from jpeft.data.quiet_tf import import_tensorflow

import_tensorflow()
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _write(folder: str, shape: tuple, encode, rng) -> list:
  os.makedirs(folder)
  coarse = rng.integers(0, 256, (-(-shape[0] // 8), -(-shape[1] // 8), 3))
  smooth = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:shape[0], :shape[1]]
  paths = []
  for i in range(1000):
    image = np.clip(smooth + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)  # photo-like file sizes
    paths.append(os.path.join(folder, f"{i}.img"))
    tf.io.write_file(paths[-1], encode(image))
  return paths


def _time(name: str, paths: list, repeats: int) -> None:
  megabytes = sum(os.path.getsize(p) for p in paths) / 1e6
  for _ in range(repeats):
    wall, cpu = time.time(), _cpu_seconds()
    bad = bad_images.find_bad_images(paths)
    print(f"{name} ({megabytes:.0f} MB): {time.time() - wall:.2f} s wall, {_cpu_seconds() - cpu:.2f} s CPU, "
          f"{len(bad)} bad")


def main() -> None:
  repeats = int(next((a.split("=")[1] for a in sys.argv[1:] if a.startswith("--repeats=")), 3))
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as root:
    jpegs = _write(os.path.join(root, "jpeg"), (375, 500, 3), tf.io.encode_jpeg, rng)
    pngs = _write(os.path.join(root, "png"), (32, 32, 3), tf.io.encode_png, rng)
    _time("1000 JPEGs 500x375", jpegs, repeats)
    _time("1000 PNGs 32x32", pngs, repeats)
    for path in jpegs[::100]:
      with open(path, "r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 2000)
    _time("1000 JPEGs 500x375, 10 corrupt", jpegs, repeats)


if __name__ == "__main__":
  main()
