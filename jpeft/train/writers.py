"""Metric writers: JSON lines (`metrics.jsonl`, one object per record) and TensorBoard event files (`tb/`)."""
from __future__ import annotations

import json
import os
from typing import Mapping

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# What `tensorboard.summary.scalar` attaches, written with core TF: tensorflow-cpu ships without the
# `tensorboard` package that `tf.summary.scalar` needs, and TensorBoard only needs this metadata to plot it.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


class MetricWriter:
  """Appends scalar metrics to `<workdir>/metrics.jsonl` and `<workdir>/tb/`.

  Only the lead process (jax.process_index() == 0) should create one.
  """

  def __init__(self, workdir: str):
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

  def write(self, step: int, scalars: Mapping[str, float], **fields) -> None:
    """scalars go to both files; extra `fields` (e.g. epoch, event) only to the JSON line."""
    record = {"step": int(step), **fields, **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    with self._tb.as_default(step=int(step)):
      for name, value in scalars.items():
        tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=_SCALAR_METADATA)
    self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tb.close()
