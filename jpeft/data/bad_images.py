"""Finding the images of a folder source that cannot be read, before anything trains on them.

Every listed file is decoded once, with the decoder the input pipeline uses (`tf.io.decode_image`, so what
passes here decodes there), in a parallel tf.data pass: about a second for VTAB-1K's 1,000-image splits on two
CPU cores. A bad image (missing, not an image, corrupt) is then either a `DataError` naming each file and its
line in the list file, or, with `skip_bad_images=True`, left out with a warning that names them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from typing import Iterator, Optional, Sequence

import numpy as np
from absl import logging

from jpeft.data.quiet_tf import tf
from jpeft.data.errors import DataError

# How many bad files a DataError, and the warning of skipped ones, name before "and N more" (a run's
# result.json records them all).
SHOWN = 5
SHOWN_SKIPPED = 50


@dataclasses.dataclass(frozen=True)
class BadImage:
  """One file a split names that cannot be used.

  Attributes:
    path: the file.
    reason: what is wrong, e.g. 'does not exist' or 'cannot be decoded (Invalid JPEG data or crop window)'.
    list_file: the list file that names it (processed layout), else None (image-folder layout).
    line: its 1-based line in `list_file`, else None.
  """
  path: str
  reason: str
  list_file: Optional[str] = None
  line: Optional[int] = None

  def __str__(self) -> str:
    return self.short() if self.list_file is None else f'{self.list_file}, {self.short()}'

  def short(self) -> str:
    """The file and what is wrong, with its line but not the list file (named once per message)."""
    line = f'line {self.line}: ' if self.line is not None else ''
    return f'{line}{self.path} {self.reason}'

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def decode_file(path: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] of the image file at `path` (JPEG, PNG, GIF's first frame, BMP, WebP)."""
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  return tf.cast(image, tf.uint8)


def _decodes(paths: Sequence[str]) -> np.ndarray:
  """bool [len(paths)]: which files decode, all decoded in parallel (a failure drops its index)."""
  ok = np.zeros([len(paths)], bool)
  if not paths:
    return ok
  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
  ds = ds.map(lambda i, p: (i, tf.shape(decode_file(p))[0]), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=False)
  for index, _ in ds.ignore_errors().batch(1024).as_numpy_iterator():
    ok[index] = True
  return ok


def _why(path: str) -> str:
  """Why `path` does not decode, from TensorFlow's own message without its op names."""
  try:
    decode_file(tf.constant(path))
  except tf.errors.OpError as e:
    message = re.sub(r'\{\{.*?\}\}|\[\[.*?\]\]|\[Op:.*$', '', e.message, flags=re.S).strip().rstrip('.')
    if message.startswith('Unknown image file format'):
      return f'is not an image file (none of {message.split("One of ")[-1].removesuffix(" required")})'
    return f'cannot be decoded ({message})'
  return 'decoded only on a second try (a flaky disk?)'


@contextlib.contextmanager
def _native_stderr_unless(drop: list) -> Iterator[None]:
  """Captures what C++ code writes to file descriptor 2 in the block (libjpeg's "Corrupt JPEG data", TF's
  "jpeg_mem.cc ... Premature end" per bad file) and writes it back unless `drop` is true by the end: then our
  one message names every bad file instead of dozens of decoder lines."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if not drop:
        captured.seek(0)
        os.write(2, captured.read())


def _check(paths: Sequence[str], list_file: Optional[str], lines: Optional[Sequence[int]]
           ) -> tuple[np.ndarray, list[BadImage]]:
  exists = np.array([os.path.isfile(p) for p in paths], bool)
  ok = np.zeros([len(paths)], bool)
  bad = []
  with _native_stderr_unless(bad):
    ok[exists] = _decodes([p for p, e in zip(paths, exists) if e])
    for i in np.flatnonzero(~ok):
      reason = 'does not exist' if not exists[i] else _why(paths[i])
      bad.append(BadImage(paths[i], reason, list_file, lines[i] if lines is not None else None))
  return ok, bad


def find_bad_images(paths: Sequence[str], list_file: Optional[str] = None,
                    lines: Optional[Sequence[int]] = None) -> list[BadImage]:
  """The files among `paths` that are missing or do not decode, in order.

  Args:
    paths: image files.
    list_file: the list file that names them, if any (for the messages).
    lines: each path's line in `list_file`.
  """
  return _check(paths, list_file, lines)[1]


class BadImagesError(DataError):
  """Bad images in one or more splits (`combine`), each named (and its list line), in one line."""

  ADVICE = ('Replace or remove these files (and their lines in the list file), or leave them out with '
            '--config.data.skip_bad_images=True (skip_bad_images=True in jpeft.data).')

  def __init__(self, parts: Sequence[str]):
    """`parts`: per split, "<count> in <split>: <files>"."""
    super().__init__(f'{"; ".join(parts)}. {self.ADVICE}')
    self.parts = tuple(parts)

  @classmethod
  def combine(cls, errors: Sequence['BadImagesError']) -> 'BadImagesError':
    """One error naming the bad images of every split in `errors` (e.g. a run's train and eval splits)."""
    return cls([part for e in errors for part in e.parts])


def _listing(bad: Sequence[BadImage], shown: int, separator: str = '; ') -> str:
  more = f'{separator}and {len(bad) - shown} more' if len(bad) > shown else ''
  return separator.join(b.short() for b in bad[:shown]) + more


def drop_bad_images(paths: Sequence[str], labels: Sequence[int], where: str, skip: bool,
                    list_file: Optional[str] = None, lines: Optional[Sequence[int]] = None
                    ) -> tuple[list[str], list[int], tuple[BadImage, ...]]:
  """(paths, labels, bad images) without the bad images, which `skip` leaves out with a warning naming them;
  without `skip` a bad image is a DataError naming each file (and its line in `list_file`).

  Args:
    paths, labels: the split's files and their labels.
    where: the split, for the messages, e.g. "split 'train800' of /data/dtd".
    skip: leave bad images out instead of raising.
    list_file, lines: see `find_bad_images`.
  """
  ok, bad = _check(paths, list_file, lines)
  if not bad:
    return list(paths), list(labels), ()
  count = f'{len(bad)} bad image{"s" if len(bad) > 1 else ""} of {len(paths)} in {where}'
  if not skip:
    raise BadImagesError([f'{count}: {_listing(bad, SHOWN)}'])
  if not ok.any():
    raise DataError(f'{count}: every image of the split is bad ({_listing(bad, SHOWN)}), so skip_bad_images '
                    f'would leave nothing. Check the folder.')
  logging.warning('Skipped %s (skip_bad_images is on):\n  %s', count, _listing(bad, SHOWN_SKIPPED, '\n  '))
  return ([p for p, k in zip(paths, ok) if k], [l for l, k in zip(labels, ok) if k], tuple(bad))
