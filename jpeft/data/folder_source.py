"""Reading images from disk: the VTAB-1K "processed" folders and plain image folders.

Processed layout (NOAH / V-PETL Bench / the study's code)::

    <root>/<task>/train800.txt, val200.txt, train800val200.txt, test.txt
    <root>/<task>/<relative/path/to/image.jpg>     # one "relative/path label" per list line

Image-folder layout (a user's own data; class index = position of the class folder name in
the sorted union of class folders of all splits, so every split agrees)::

    <root>/<task>/<split>/<class name>/<image>

Both give a tf.data.Dataset of {'image': uint8 [H, W, 3], 'label': int32 []}, the same as
`tfds_source.load_tfds`, so the rest of the pipeline cannot tell the sources apart.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import tensorflow as tf

from jpeft.data.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def read_list_file(path: str, num_classes: Optional[int] = None) -> list[tuple[str, int]]:
  """Parses a "relative/path label" list: [(relative path, label)], blank lines skipped.

  The label is the last whitespace-separated field, so paths may contain spaces.

  Raises:
    DataError: missing file, a malformed line (with its number), or a label outside
      [0, num_classes) when `num_classes` is given.
  """
  if not os.path.isfile(path):
    raise DataError(f'List file {path} does not exist. A processed VTAB-1K task folder holds '
                    f'train800.txt, val200.txt, train800val200.txt and test.txt with one '
                    f'"relative/path label" per line.')
  entries = []
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      parts = line.rsplit(maxsplit=1)
      if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
        raise DataError(f'{path}, line {lineno}: malformed line {line!r}. Each line must be '
                        f'"relative/path/to/image label" with an integer label, e.g. '
                        f'"images/train800/0001.jpg 3".')
      label = int(parts[1])
      if label < 0 or (num_classes is not None and label >= num_classes):
        raise DataError(f'{path}, line {lineno}: label {label} is outside [0, {num_classes}) '
                        f'for this task. Check that the list belongs to this task.')
      entries.append((parts[0], label))
  return entries


def find_task_dir(root: str, names: Sequence[str]) -> str:
  """The first existing `<root>/<name>` among `names`; DataError naming all tried paths."""
  if not root:
    raise DataError("source='folder' or 'imagefolder' needs folder_root=<directory that holds "
                    "one sub-directory per task>.")
  for name in names:
    path = os.path.join(root, name)
    if os.path.isdir(path):
      return path
  tried = ', '.join(os.path.join(root, n) for n in names)
  raise DataError(f'No folder for this task under folder_root={root} (tried {tried}). Put the '
                  f'task\'s images and lists there, or check folder_root.')


def processed_split(task_dir: str, split: str,
                    num_classes: Optional[int] = None) -> tuple[list[str], list[int]]:
  """(absolute image paths, labels) of `<task_dir>/<split>.txt`; checks that images exist."""
  path = os.path.join(task_dir, f'{split}.txt')
  if not os.path.isfile(path):
    have = sorted(f[:-4] for f in os.listdir(task_dir) if f.endswith('.txt'))
    raise DataError(f"Split '{split}' has no list file {path}. Lists present: {have or 'none'}. "
                    f"Processed VTAB-1K folders hold only train800, val200, train800val200 and "
                    f"test; use source='tfds' for the full splits.")
  entries = read_list_file(path, num_classes)
  paths = [os.path.join(task_dir, rel) for rel, _ in entries]
  missing = [p for p in paths[:1] + paths[-1:] if not os.path.isfile(p)]
  if missing:  # Checking first and last only: cheap, and catches a wrong root.
    raise DataError(f'{path} lists {missing[0]}, which does not exist. Paths in the lists are '
                    f'relative to the task folder {task_dir}.')
  return paths, [label for _, label in entries]


def image_folder_classes(task_dir: str) -> list[str]:
  """Sorted union of the class folder names of all split folders under `task_dir`."""
  classes = set()
  for split in os.listdir(task_dir):
    split_dir = os.path.join(task_dir, split)
    if os.path.isdir(split_dir):
      classes.update(c for c in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, c)))
  return sorted(classes)


def image_folder_split(task_dir: str, split: str) -> tuple[list[str], list[int], list[str]]:
  """(image paths, labels, class names) of `<task_dir>/<split>/<class>/<image>`."""
  split_dir = os.path.join(task_dir, split)
  if not os.path.isdir(split_dir):
    have = sorted(d for d in os.listdir(task_dir) if os.path.isdir(os.path.join(task_dir, d)))
    raise DataError(f"Split '{split}' has no folder {split_dir}. Split folders present: "
                    f"{have or 'none'}. An image folder holds <split>/<class name>/<image>.")
  classes = image_folder_classes(task_dir)
  paths, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    for fname in sorted(os.listdir(class_dir)):
      if fname.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(class_dir, fname))
        labels.append(label)
  if not paths:
    raise DataError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) under {split_dir}/<class>/.')
  return paths, labels, classes


def _decode(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  return {'image': tf.cast(image, tf.uint8), 'label': tf.cast(label, tf.int32)}


def files_dataset(paths: Sequence[str], labels: Sequence[int],
                  shuffle_seed: Optional[int] = None) -> tf.data.Dataset:
  """{'image': uint8 [H, W, 3], 'label': int32 []} per file, in list order, or reshuffled
  every epoch when `shuffle_seed` is given (file names are shuffled before decoding, which is
  cheap, so later shuffle buffers need not hold many decoded images)."""
  ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(list(labels), tf.int32)))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
  return ds.map(_decode, num_parallel_calls=AUTOTUNE)
