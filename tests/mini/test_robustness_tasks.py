"""The offline robustness study's tasks: mini_shapes maps onto the upstream classes (so the shipped backbone's
classifier is its zero-shot head), and its shifted sets are test-only TFDS builders in its label space."""
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jpeft import checkpoints, config_base
from jpeft.data import get_task, list_tasks, mini_vtab
from jpeft.data.mini import shapes, upstream_geometry
from jpeft.models import vit
from jpeft.train import model_setup

SHIFTED = ["mini_shapes_backdrop", "mini_shapes_colour", "mini_shapes_sketch", "mini_shapes_corrupt"]


def test_registered_shifted_sets_share_the_label_space_and_have_only_test():
  assert list_tasks("mini_shift") == SHIFTED
  main = get_task("mini_shapes")
  assert main.split("train800") == "train[:800]" and main.class_subset is None
  for name in SHIFTED:
    task = get_task(name)
    assert dict(task.splits) == {"test": "test"} and task.num_classes == main.num_classes == 6
  assert get_task("mini_shapes_sketch").class_subset == (0, 1, 2, 3)
  _, labels = mini_vtab.generate("mini_shapes_sketch", "test", 60)
  assert set(labels) == {0, 1, 2, 3}


def test_each_class_stands_for_its_shape_on_every_backdrop():
  groups = get_task("mini_shapes").upstream_classes
  # The shipped head's label (mini_upstream_geometry) = object * 3 + backdrop; objects 0-5 are the six shapes.
  assert sorted(c for g in groups for c in g) == list(range(18))
  for label, group in enumerate(groups):
    assert {c // 3 for c in group} == {label} and len(group) == 3
  rng = np.random.default_rng(0)
  for _ in range(30):  # the generator agrees: a drawn shape's label falls in its group
    sample = upstream_geometry.render_geometry(rng, "test")
    if sample.factors["object"] in shapes.UPSTREAM_SHAPES:
      assert sample.label in groups[shapes.UPSTREAM_SHAPES.index(sample.factors["object"])]


def test_upstream_head_is_a_zero_shot_classifier_of_the_shipped_backbone():
  config = config_base.demo_config()
  config.task, config.head_init = "mini_shapes", "upstream"
  head = model_setup.initial_head(config, get_task("mini_shapes"))
  upstream = np.load(config_base.MINI_BACKBONE)
  assert upstream["head/kernel"].shape == (128, mini_vtab.UPSTREAM_GEOMETRY.num_classes)
  np.testing.assert_allclose(head["kernel"][:, 2], upstream["head/kernel"][:, 6:9].mean(1), atol=1e-7)
  model = vit.create_model("mini/8", num_classes=6)
  shapes_ = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  params = dict(checkpoints.load_pretrained(config_base.MINI_BACKBONE, target=shapes_), head=head)
  images, labels = mini_vtab.generate("mini_shapes", "test", 300)
  predicted = model.apply({"params": params}, images / 255.0, train=False).argmax(-1)
  assert (predicted == labels).mean() > 0.3  # chance: 1/6


def test_shifted_builder_generates_only_its_test_split(tmp_path):
  mini_vtab.prepare(["mini_shapes_colour"], data_dir=str(tmp_path))
  builder = tfds.builder("mini_shapes_colour", data_dir=str(tmp_path))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"test": 1000}
  stored = next(iter(tfds.as_numpy(builder.as_dataset(split="test[:5]", shuffle_files=False))))
  images, _ = mini_vtab.generate("mini_shapes_colour", "test", 1)
  assert np.array_equal(stored["image"], images[0])


def test_sketches_are_dark_lines_on_light_paper():
  for sample in mini_vtab.samples("mini_shapes_sketch", "test", 20):
    grey = sample.image.mean(-1)
    assert np.median(grey) > 190 and sample.mask.any() and grey[sample.mask].mean() < np.median(grey) - 40
  assert shapes.SKETCH_CLASSES == (0, 1, 2, 3)
