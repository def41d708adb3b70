"""Reading images from disk: the VTAB-1K "processed" folders and plain image folders.

Processed layout (NOAH / V-PETL Bench / the study's code)::

    <root>/<task>/train800.txt, val200.txt, train800val200.txt, test.txt
    <root>/<task>/<relative/path/to/image.jpg>     # one "relative/path label" per list line

Image-folder layout (a user's own data; class index = position of the class folder name in
the sorted union of class folders of all splits, so every split agrees)::

    <root>/<task>/<split>/<class name>/<image>

Both give a tf.data.Dataset of {'image': uint8 [H, W, 3], 'label': int32 []}, the same as
`tfds_source.load_tfds`, so the rest of the pipeline cannot tell the sources apart. Every image a
split names is decoded once when the split is opened (`jpeft.data.bad_images`), so a missing or
broken file is reported, by name and list line, before anything trains.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence


from jpeft.data.quiet_tf import tf
from jpeft.data.bad_images import BadImage, decode_file, drop_bad_images
from jpeft.data.errors import DataError

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow with this module
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


class ListEntry(NamedTuple):
  """One line of a list file: the image's path relative to the task folder, its label, its line number."""
  path: str
  label: int
  line: int


class FolderSplit(NamedTuple):
  """A split of a folder source: its usable image files and their labels, and the bad images left out
  (`skip_bad_images`; otherwise a bad image is a DataError)."""
  paths: list[str]
  labels: list[int]
  skipped: tuple[BadImage, ...] = ()


def read_list_file(path: str, num_classes: Optional[int] = None) -> list[ListEntry]:
  """Parses a "relative/path label" list: [(relative path, label, line number)], blank lines skipped.

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
      entries.append(ListEntry(parts[0], label, lineno))
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


def processed_split(task_dir: str, split: str, num_classes: Optional[int] = None,
                    skip_bad_images: bool = False) -> FolderSplit:
  """The images and labels of `<task_dir>/<split>.txt`, each image decoded once to check it (see
  `jpeft.data.bad_images`): a missing or undecodable one is a DataError naming it and its line, or with
  `skip_bad_images` is left out (and named in a warning and in `FolderSplit.skipped`)."""
  path = os.path.join(task_dir, f'{split}.txt')
  if not os.path.isfile(path):
    have = sorted(f[:-4] for f in os.listdir(task_dir) if f.endswith('.txt'))
    raise DataError(f"Split '{split}' has no list file {path}. Lists present: {have or 'none'}. "
                    f"Processed VTAB-1K folders hold only train800, val200, train800val200 and "
                    f"test; use source='tfds' for the full splits.")
  entries = read_list_file(path, num_classes)
  paths = [os.path.join(task_dir, e.path) for e in entries]
  if paths and not any(os.path.isfile(p) for p in paths):  # A wrong root, rather than bad images.
    raise DataError(f'None of the {len(paths)} files {path} lists exists (the first: {paths[0]}, which does '
                    f'not exist). Paths in the lists are relative to the task folder {task_dir}.')
  return FolderSplit(*drop_bad_images(paths, [e.label for e in entries], f"split '{split}' ({path})",
                                      skip_bad_images, path, [e.line for e in entries]))


def image_folder_classes(task_dir: str) -> list[str]:
  """Sorted union of the class folder names of all split folders under `task_dir`."""
  classes = set()
  for split in os.listdir(task_dir):
    split_dir = os.path.join(task_dir, split)
    if os.path.isdir(split_dir):
      classes.update(c for c in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, c)))
  return sorted(classes)


def image_folder_split(task_dir: str, split: str, skip_bad_images: bool = False) -> FolderSplit:
  """The images and labels of `<task_dir>/<split>/<class>/<image>`, checked as in `processed_split`."""
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
  return FolderSplit(*drop_bad_images(paths, labels, f"split '{split}' ({split_dir})", skip_bad_images))


def _decode(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
  return {'image': decode_file(path), 'label': tf.cast(label, tf.int32)}


def files_dataset(paths: Sequence[str], labels: Sequence[int],
                  shuffle_seed: Optional[int] = None) -> tf.data.Dataset:
  """{'image': uint8 [H, W, 3], 'label': int32 []} per file, in list order, or reshuffled
  every epoch when `shuffle_seed` is given (file names are shuffled before decoding, which is
  cheap, so later shuffle buffers need not hold many decoded images)."""
  ds = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(list(labels), tf.int32)))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
  return ds.map(_decode, num_parallel_calls=AUTOTUNE)
