"""Predictions of fine-tuned runs on new images: top-k classes with names and probabilities, as a CSV.

  rows, skipped = predict(['runs/dtd_lora', 'runs/dtd_dora'], 'photos/*.jpg', top_k=5, ensemble=True)

Each image (any size or mode: decoded to RGB) goes through the run's own evaluation preprocessing (its image
size, normalisation, centre crop and eval resize). Several runs must share that preprocessing and the backbone
(pretrained, model); they are scored in one compiled program: the frozen backbone weights enter once, and each
run applies its own trained parameters and methods to every batch (as the sweep engine batches trials). An image
that cannot be read is listed in `skipped` and left out; it never stops the others.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jpeft.data.quiet_tf import tf
from jpeft.data import preprocess, tasks
from jpeft.peft import partition
from jpeft.train import model_setup, reuse
from jpeft.train.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# What the runs of one program must share: the input pipeline and the frozen backbone.
SHARED = ("pretrained", "model.variant", "model.style", "data.image_size", "data.normalization",
          "data.center_crop", "data.eval_resize")


@dataclasses.dataclass(frozen=True)
class Row:
  """One image's predictions: per run (and 'ensemble') the top-k (class index, probability) pairs."""
  path: str
  top: dict[str, list[tuple[int, float]]]


def image_paths(images: str) -> list[str]:
  """A directory's image files (sorted, by extension) or a glob's matches (any file). Raises ConfigError on none."""
  paths = (sorted(os.path.join(images, n) for n in os.listdir(images) if n.lower().endswith(IMAGE_EXTENSIONS))
           if os.path.isdir(images) else sorted(p for p in glob.glob(images) if os.path.isfile(p)))
  if not paths:
    raise ConfigError(f"--images={images!r} names no image: pass a directory of image files "
                      f"({', '.join(IMAGE_EXTENSIONS)}) or a glob such as 'photos/*.jpg'.")
  return paths


def _value(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config.to_dict() if hasattr(config, "to_dict") else config


def load_runs(workdirs: Sequence[str]) -> tuple[list, list]:
  """(saved runs, their model setups); raises ConfigError when they differ in a SHARED field."""
  saved = [reuse.load_run(w) for w in workdirs]
  for other in saved[1:]:
    differ = [f for f in SHARED if _value(other.config, f) != _value(saved[0].config, f)]
    if differ:
      raise ConfigError(f"--workdirs: '{other.workdir}' differs from '{saved[0].workdir}' in {differ}; runs scored "
                        "together must share the backbone and the input preprocessing. Predict them separately.")
  setups = []
  for run in saved:
    model_setup.check_pretrained(run.config, run.meta, run.workdir)
    setups.append(model_setup.build(run.config))
  return saved, setups


def _read(path: str, config) -> Optional[np.ndarray]:
  """The preprocessed image float32 [S, S, 3], or None when the file cannot be decoded."""
  try:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  except (tf.errors.OpError, OSError):
    return None
  d = config.data
  return preprocess.preprocess_image(image, image_size=d.image_size, normalization=d.normalization,
                                     center_crop_eval=d.center_crop, eval_resize=d.eval_resize).numpy()


def predict(workdirs: Sequence[str], images: str, top_k: int = 5, ensemble: bool = False, batch_size: int = 32
            ) -> tuple[list[Row], list[str], int]:
  """Top-k predictions of each run (and of their mean probability with `ensemble`).

  Returns (rows, skipped paths, number of classes)."""
  saved, setups = load_runs(workdirs)
  config = saved[0].config
  num_classes = tasks.get_task(config.task).num_classes
  if any(tasks.get_task(s.config.task).num_classes != num_classes for s in saved):
    raise ConfigError("--workdirs: the runs have heads of different class counts; predict them separately.")
  # The backbone weights every run shares enter the program once; each run keeps its own other frozen ones.
  shared = {k: v for k, v in setups[0].frozen.items()
            if all(k in s.frozen and s.frozen[k] is not None and np.shape(s.frozen[k]) == np.shape(v) and
                   np.array_equal(s.frozen[k], v) for s in setups[1:])}
  own_frozen = [{k: v for k, v in s.frozen.items() if k not in shared} for s in setups]
  trainables = [run.trainable for run in saved]
  models = [s.model for s in setups]
  merge = [float(run.config.merge_factor) for run in saved]

  @jax.jit
  def probabilities(trainables, own_frozen, shared, batch):  # [runs, B, C]
    return jnp.stack([jax.nn.softmax(m.apply({"params": partition.combine({**t, **o}, shared)}, batch,
                                             train=False, merge_factor=f), axis=-1)
                      for m, t, o, f in zip(models, trainables, own_frozen, merge)])

  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  rows, skipped, pending = [], [], []
  paths = image_paths(images)

  def flush():
    batch = np.stack([image for _, image in pending])
    padded = np.concatenate([batch, np.zeros((batch_size - len(batch),) + batch.shape[1:], batch.dtype)])
    probs = np.asarray(probabilities(trainables, own_frozen, shared, padded))[:, :len(batch)]
    columns = dict(zip(names, probs))
    if ensemble:
      columns["ensemble"] = probs.mean(0)
    for i, (path, _) in enumerate(pending):
      top = {}
      for column, p in columns.items():
        order = np.argsort(-p[i], kind="stable")[:top_k]
        top[column] = [(int(c), float(p[i][c])) for c in order]
      rows.append(Row(path, top))
    pending.clear()

  for path in paths:
    image = _read(path, config)
    if image is None:
      skipped.append(path)
      continue
    pending.append((path, image))
    if len(pending) == batch_size:
      flush()
  if pending:
    flush()
  return rows, skipped, num_classes


def write_csv(path: str, rows: Sequence[Row], class_names: Optional[Sequence[str]]) -> None:
  """One line per image: path, then per column (run or ensemble) and rank r: <column>_top<r>_class,
  <column>_top<r>_name, <column>_top<r>_prob."""
  import csv  # pylint: disable=import-outside-toplevel
  columns = list(rows[0].top) if rows else []
  k = len(rows[0].top[columns[0]]) if rows else 0
  header = ["image"] + [f"{c}_top{r + 1}_{field}" for c in columns for r in range(k)
                        for field in ("class", "name", "prob")]
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      line = [row.path]
      for c in columns:
        for cls, prob in row.top[c]:
          line += [cls, class_names[cls] if class_names else str(cls), f"{prob:.6f}"]
      writer.writerow(line)
  os.replace(tmp, path)
