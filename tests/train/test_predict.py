"""`jpeft.predict`: top-k predictions of one or several runs on a folder of new images."""
import csv
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from .conftest import tiny_overrides
from .test_peft_export import _saved_run, backbone  # pylint: disable=unused-import  (the module fixture)
from jpeft import predict
from jpeft.data import preprocess
from jpeft.peft import partition
from jpeft.train import reuse
from jpeft.train.errors import ConfigError


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  """Three images of other sizes and modes (RGB, grey, RGBA) and a file that is no image."""
  folder = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  for name, shape in (("a.png", (40, 50, 3)), ("b.png", (20, 20, 1)), ("c.png", (33, 64, 4))):
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    tf.io.write_file(str(folder / name), tf.io.encode_png(pixels))
  (folder / "broken.jpg").write_bytes(b"not an image")
  return str(folder)


def _expected(workdir, setup, path):
  """The run's softmax on one image, computed here from its checkpoint and its eval preprocessing."""
  run = reuse.load_run(workdir)
  d = run.config.data
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  x = preprocess.preprocess_image(image, image_size=d.image_size, normalization=d.normalization).numpy()
  logits = setup.model.apply({"params": partition.combine(run.trainable, setup.frozen)}, x[None], train=False)
  return np.asarray(jax.nn.softmax(logits[0]))


def test_two_runs_in_one_program_with_an_ensemble(folder_root, backbone, images, tmp_path):
  runs = [_saved_run(tmp_path, tiny_overrides(folder_root, **{"method": m, "pretrained.path": backbone}))
          for m in ("lora", "dora")]
  rows, skipped, classes = predict.predict([w for w, _ in runs], images, top_k=3, ensemble=True, batch_size=2)
  assert skipped == [os.path.join(images, "broken.jpg")] and classes == 47
  assert [os.path.basename(r.path) for r in rows] == ["a.png", "b.png", "c.png"]
  for row in rows:
    expected = [_expected(w, s, row.path) for w, s in runs]
    for (workdir, _), p in zip(runs, expected):
      top = row.top[os.path.basename(workdir)]
      assert [c for c, _ in top] == list(np.argsort(-p, kind="stable")[:3])
      np.testing.assert_allclose([q for _, q in top], np.sort(p)[::-1][:3], rtol=1e-4)
    mean = (expected[0] + expected[1]) / 2
    np.testing.assert_allclose([q for _, q in row.top["ensemble"]], np.sort(mean)[::-1][:3], rtol=1e-4)
  out = str(tmp_path / "preds.csv")
  predict.write_csv(out, rows, [f"class {i}" for i in range(47)])
  with open(out, encoding="utf-8") as f:
    lines = list(csv.reader(f))
  assert lines[0][:4] == ["image", "run_lora_top1_class", "run_lora_top1_name", "run_lora_top1_prob"]
  assert len(lines) == 4 and lines[1][2] == f"class {lines[1][1]}"


def test_no_images_is_named(tmp_path):
  with pytest.raises(ConfigError, match=r"--images='.*empty\*' names no image"):
    predict.image_paths(str(tmp_path / "empty*"))
