"""Metric writers: JSON lines (`metrics.jsonl`, one object per record) and TensorBoard event files (`tb/`).

Each process writes its own TensorBoard event file (TensorBoard merges the files of a directory by step). A
resumed run first drops, from `metrics.jsonl` and from the earlier event files, what the killed process logged
after the checkpoint it resumes from (`drop_after`), so that every step appears once.
"""
from __future__ import annotations

import json
import os
from typing import Mapping

from absl import logging

from jpeft.data.quiet_tf import import_tensorflow, tf
from jpeft.train import errors

def _scalar_metadata() -> bytes:
  """What `tensorboard.summary.scalar` attaches, written with core TF: tensorflow-cpu ships without the
  `tensorboard` package that `tf.summary.scalar` needs, and TensorBoard only needs this metadata to plot it."""
  import_tensorflow()  # quietly, before its submodules (TensorFlow is imported once a run writes metrics)
  from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


JSONL, TB = "metrics.jsonl", "tb"


def _write_errors() -> tuple:
  return (OSError, tf.errors.OpError)  # TensorFlow reports a failed event-file write as an OpError


class MetricWriter:
  """Appends scalar metrics to `<workdir>/metrics.jsonl` and `<workdir>/tb/`.

  The files are opened at the first `write`, so a run that fails before logging anything leaves none behind.
  Only the lead process (jax.process_index() == 0) should create one.
  """

  def __init__(self, workdir: str):
    self._workdir = workdir
    self._jsonl = self._tb = None

  def write(self, step: int, scalars: Mapping[str, float], **fields) -> None:
    """scalars go to both files; extra `fields` (e.g. epoch, event) only to the JSON line."""
    jsonl, tb = os.path.join(self._workdir, JSONL), os.path.join(self._workdir, TB)
    with errors.writing(jsonl, errors.RUN_KEPT):
      if self._jsonl is None:
        self._jsonl = open(jsonl, "a")
      record = {"step": int(step), **fields, **{k: float(v) for k, v in scalars.items()}}
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    with errors.writing(tb, errors.RUN_KEPT, catch=_write_errors()):
      if self._tb is None:
        self._tb = tf.summary.create_file_writer(tb)
      with self._tb.as_default(step=int(step)):
        for name, value in scalars.items():
          tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=_scalar_metadata())
      self._tb.flush()

  def close(self) -> None:
    """Closes the files. Every record was flushed when written, so a failure here loses nothing; it is logged
    (a full disk was already reported by the write or save that ran into it)."""
    for f in (self._jsonl, self._tb):
      try:
        if f is not None:
          f.close()
      except _write_errors() as e:
        logging.warning("Closing a metrics file in %s: %s", self._workdir, e)


def drop_after(workdir: str, step: int) -> None:
  """Removes every record with a step > `step` from `<workdir>/metrics.jsonl` and the event files in
  `<workdir>/tb/`, rewriting each file atomically (a copy, then a rename). A record cut short by a kill (the
  last line or event record) is dropped too."""
  path = os.path.join(workdir, JSONL)
  if os.path.exists(path):
    with open(path) as f:
      lines = f.read().splitlines()
    kept = []
    for line in lines:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):  # a line cut short by a kill
        pass
    if len(kept) < len(lines):
      def write(tmp):
        with open(tmp, "w") as f:
          f.write("".join(line + "\n" for line in kept))
      _replace(path, write)
  tb = os.path.join(workdir, TB)
  for name in sorted(os.listdir(tb)) if os.path.isdir(tb) else ():
    _drop_events_after(os.path.join(tb, name), step)


def _drop_events_after(path: str, step: int) -> None:
  records, complete = [], True
  try:
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      records.append(record)
  except tf.errors.DataLossError:  # the last record was cut short by a kill
    complete = False
  import_tensorflow()
  from tensorflow.core.util import event_pb2  # pylint: disable=g-import-not-at-top
  kept = [r for r in records if event_pb2.Event.FromString(r).step <= step]
  if len(kept) < len(records) or not complete:
    def write(tmp):
      with tf.io.TFRecordWriter(tmp) as writer:
        for record in kept:
          writer.write(record)
    _replace(path, write)


def _replace(path: str, write) -> None:
  tmp = path + ".tmp"
  with errors.writing(path, errors.RUN_KEPT, catch=_write_errors()):
    write(tmp)
    os.replace(tmp, path)  # atomic: a kill leaves the old file or the new one, never half of one
