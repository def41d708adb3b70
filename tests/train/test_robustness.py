"""Robustness runs: the final evaluation scores `config.shift_tasks` on the classes each covers (ImageNet-A's 200
of 1000, from TFDS's label file); a run records the head it starts from; WiSE-FT's alpha = 0 is the zero-shot
model (pretrained backbone + upstream head mapped to the task's classes, computed here independently) and
alpha = 1 the fine-tuned one, for a merge-factor method (LoRA) and an interpolating one (full fine-tuning)."""
import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from .conftest import REPO, load_config, tiny_overrides
from jpeft import checkpoints, outputs, wise
from jpeft.data import Task, class_mask, load_split_arrays, register_task, shift
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import results, trainer
from jpeft.train.errors import ConfigError
from jpeft.wise import ensemble

BACKBONE = f"{REPO}/tests/fixtures/vit_mu8.npz"  # mu/8 with a 5-class upstream head
# A 1000-class task on the fixture's dtd images (labels 0-3), so ImageNet-A's label space is the model's; class c
# stands for upstream classes (c % 5, (c + 1) % 5), so the upstream head is its zero-shot head.
UPSTREAM_CLASSES = tuple((c % 5, (c + 1) % 5) for c in range(1000))
register_task(Task(name="dtd_as_1000", builder="dtd:3.*.*", num_classes=1000, folder_names=("dtd",),
                   upstream_classes=UPSTREAM_CLASSES))


def _write_imagenet_a(root: str, num: int = 24) -> np.ndarray:
  """<root>/imagenet_a/test.txt: `num` 16x16 images labelled with ImageNet-A classes; returns the labels."""
  task_dir = os.path.join(root, "imagenet_a")
  os.makedirs(os.path.join(task_dir, "images"), exist_ok=True)
  rng = np.random.default_rng(1)
  labels = np.array(shift.class_indices(shift.IMAGENET_A_WNIDS))[rng.integers(0, 200, num)]
  lines = []
  for i, label in enumerate(labels):
    tf.io.write_file(os.path.join(task_dir, f"images/{i}.png"),
                     tf.io.encode_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
    lines.append(f"images/{i}.png {label}")
  with open(os.path.join(task_dir, "test.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return labels


@pytest.fixture(scope="module")
def runs(folder_root, tmp_path_factory):
  """Workdirs of a LoRA and a full fine-tuning run from the zero-shot head, and the ImageNet-A labels."""
  labels = _write_imagenet_a(folder_root)
  workdirs = {}
  for method in ("lora", "full"):
    overrides = tiny_overrides(folder_root, task="dtd_as_1000", method=method, head_init="upstream",
                               shift_tasks=("imagenet_a",),
                               **{"pretrained.path": BACKBONE, "optim.epochs": 1, "optim.warmup_epochs": 0,
                                  "optim.lr": 3e-2 if method == "lora" else 3e-3})
    workdirs[method] = tmp_path_factory.mktemp("wise") / method
    trainer.run(load_config(overrides), str(workdirs[method]))
  return workdirs, labels


def test_shift_tasks_are_scored_on_the_classes_they_cover(runs):
  workdirs, labels = runs
  workdir = workdirs["lora"]
  logits = np.load(workdir / "logits_imagenet_a_test.npy")
  assert np.array_equal(np.load(workdir / "labels_imagenet_a_test.npy"), labels)
  # Every class outside ImageNet-A's 200 is masked out (-inf); the accuracy is the argmax over the 200.
  assert np.array_equal(np.isfinite(logits), np.broadcast_to(class_mask("imagenet_a"), logits.shape))
  result = json.loads((workdir / "result.json").read_text())
  assert result["shift_accuracy"] == {"imagenet_a_test": pytest.approx((logits.argmax(-1) == labels).mean())}
  assert np.isfinite(np.load(workdir / "logits_val200.npy")).all()  # the run's own split: all 1000 classes


def test_a_shift_task_in_another_label_space_is_refused(folder_root):
  config = load_config(tiny_overrides(folder_root, shift_tasks=("imagenet_a",)))  # dtd: 47 classes
  with pytest.raises(ConfigError, match=r"shift_tasks.*label space of task 'dtd' \(47 classes\); 'imagenet_a' "
                                        r"has 1000 classes"):
    trainer.run(config, "/nonexistent/never_created")


def _zero_shot_logits(images):
  """The plain ViT (no method) with the fixture backbone and its upstream head averaged over each class's set."""
  model = vit.create_model("mu/8", num_classes=1000)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)))["params"]
  params = checkpoints.load_pretrained(BACKBONE, target=shapes)
  upstream = np.load(BACKBONE)
  params["head"] = {"kernel": np.stack([upstream["head/kernel"][:, list(c)].mean(1) for c in UPSTREAM_CLASSES], 1),
                    "bias": np.array([upstream["head/bias"][list(c)].mean() for c in UPSTREAM_CLASSES])}
  return np.asarray(model.apply({"params": params}, images, train=False))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_alpha_0_is_the_zero_shot_model_and_alpha_1_the_fine_tuned_one(runs, folder_root, method):
  workdirs, _ = runs
  run = ensemble.load_run(str(workdirs[method]))
  head = results.load_init_head(str(workdirs[method]))
  assert set(head) == {"head/kernel", "head/bias"} and head["head/kernel"].shape == (32, 1000)
  images = load_split_arrays("dtd_as_1000", "val200", source="folder", folder_root=folder_root,
                             image_size=32)["image"]
  logits = {}
  for alpha in (0.0, 1.0):
    trainable, merge_factor = ensemble.ensemble(run, alpha)
    assert merge_factor == alpha
    logits[alpha] = run.setup.model.apply({"params": partition.combine(trainable, run.setup.frozen)}, images,
                                          train=False, merge_factor=merge_factor)
  np.testing.assert_allclose(logits[0.0], _zero_shot_logits(images), rtol=1e-5, atol=1e-5)
  # The trainer's own final evaluation of the fine-tuned model.
  np.testing.assert_allclose(logits[1.0], np.load(workdirs[method] / "logits_val200.npy"), rtol=1e-5, atol=1e-5)
  assert np.abs(logits[1.0] - logits[0.0]).max() > 1e-3  # training moved the model


def test_cli_table_and_figure(runs, tmp_path):
  workdirs, _ = runs
  paths = wise.run([str(workdirs["lora"])], [0.0, 1.0], None, str(tmp_path / "out"))
  table = json.loads(open(paths["json"]).read())
  assert table["sets"] == ["dtd_as_1000:val200", "imagenet_a:test"]  # the run's eval split and shift tasks
  assert [(r["method"], r["alpha"]) for r in table["rows"]] == [("lora", 0.0), ("lora", 1.0)]
  result = json.loads((workdirs["lora"] / "result.json").read_text())
  assert table["rows"][1]["in_distribution"] == pytest.approx(result["accuracy"])
  assert table["rows"][1]["shift_mean"] == pytest.approx(result["shift_accuracy"]["imagenet_a_test"])
  assert open(paths["png"], "rb").read(4) == b"\x89PNG"
  assert open(paths["csv"]).readline().startswith("method,alpha,merge_factor,dtd_as_1000:val200,imagenet_a:test")


def test_a_second_wise_refuses_the_first_tables_unless_told_and_leaves_no_stale_figure(runs, tmp_path):
  workdirs, _ = runs
  out = tmp_path / "out"
  first = wise.run([str(workdirs["lora"])], [1.0], None, str(out))
  table = open(first["md"]).read()
  with pytest.raises(outputs.OutputError, match=r"wise.json' exists.*--overwrite"):
    wise.run([str(workdirs["lora"])], [0.0], ["dtd_as_1000:val200"], str(out))
  assert open(first["md"]).read() == table and os.path.exists(first["png"])
  second = wise.run([str(workdirs["lora"])], [0.0], ["dtd_as_1000:val200"], str(out), overwrite=True)
  assert [r["alpha"] for r in json.loads(open(second["json"]).read())["rows"]] == [0.0]
  # No shifted set, so no figure: the first run's figure would have described another table.
  assert "png" not in second and not os.path.exists(first["png"])


def test_a_workdir_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(ConfigError, match="holds no checkpoint.*finished training run"):
    ensemble.load_run(str(tmp_path))
