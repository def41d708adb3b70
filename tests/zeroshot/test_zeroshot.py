"""Zero-shot heads against open_clip's build_zero_shot_classifier on a tiny random CLIP (make_clip_text_reference.py),
and the head in jpeft's ViT: its logits equal CLIP's zero-shot logits, and both of its layers train as `head`."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import checkpoints, config_base, peft, zeroshot
from jpeft.checkpoints import hub
from jpeft.checkpoints.clip_text import read_clip_text
from jpeft.models.vit import create_model
from jpeft.peft import partition
from jpeft.sweep import trial_log
from jpeft.train import config_checks, model_setup, run_config
from jpeft.train.errors import ConfigError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "reference_clip_text.npz")))
CLIP = os.path.join(FIXTURES, "clip_zeroshot_mu.safetensors")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
  cache = str(tmp_path_factory.mktemp("cache"))
  built = zeroshot.build_head(CLIP, list(REF["zs_classnames"]), list(REF["zs_templates"]), num_heads=2,
                              cache_dir=cache, batch_size=8)
  return built, cache


def test_head_matches_open_clip_classifier(head):
  built, _ = head
  scale = float(REF["zs_logit_scale"])
  np.testing.assert_allclose(built["head"]["kernel"] / scale, REF["zs_classifier"], atol=1e-5)
  np.testing.assert_array_equal(built["head"]["bias"], np.zeros(4, np.float32))
  assert built["proj"]["kernel"].shape == (32, 16)


def test_head_is_cached_and_keyed(head):
  built, cache = head
  args = (CLIP, list(REF["zs_classnames"]), list(REF["zs_templates"]))
  path = zeroshot.cache_path(*args, num_heads=2, cache_dir=cache)
  assert os.path.isfile(path)
  again = zeroshot.build_head(*args, num_heads=2, cache_dir=cache)
  np.testing.assert_array_equal(again["head"]["kernel"], built["head"]["kernel"])
  # Other classes or templates are another head.
  assert zeroshot.cache_path(CLIP, list(REF["zs_classnames"])[:3], list(REF["zs_templates"]), num_heads=2,
                             cache_dir=cache) != path
  assert zeroshot.cache_path(args[0], args[1], list(REF["zs_templates"])[:2], num_heads=2, cache_dir=cache) != path


def test_vit_with_zero_shot_head_gives_clip_zero_shot_logits(head):
  built, _ = head
  model = create_model("mu/8", style="clip", num_classes=4, projection_dim=16, normalize_feature=True)
  images = jnp.asarray(REF["zs_images"])
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)["params"]
  backbone = checkpoints.load_pretrained(CLIP, target=shapes, style="clip")
  params = {**backbone, **built}  # the whole model: the image tower, then proj and head from the text side
  assert jax.tree.structure(params) == jax.tree.structure(shapes)
  logits = np.asarray(jax.jit(model.apply)({"params": params}, images))
  np.testing.assert_allclose(logits, REF["zs_logits"], atol=1e-4)
  labels = partition.label_params(params, peft.build_methods("lora", {}))
  assert {labels["proj/kernel"], labels["head/kernel"], labels["head/bias"]} == {"head"}


def test_builtin_imagenet_lists():
  classnames = zeroshot.read_list("imagenet", "classnames")
  templates = zeroshot.read_list("openai_imagenet", "templates")
  assert len(classnames) == 1000 and classnames[0] == "tench" and classnames[-1] == "toilet paper"
  assert len(templates) == 80 and templates[0] == "a bad photo of a {}."


def test_bad_inputs_are_reported(tmp_path):
  bad = tmp_path / "templates.txt"
  bad.write_text("a photo of a cat.\n")
  with pytest.raises(ValueError, match="exactly once"):
    zeroshot.read_list(str(bad), "templates")
  config = config_base.get_config("linear")
  config.head_init = "zeroshot"
  with pytest.raises(ConfigError, match="projection_dim"):
    config_checks.validate_config(config)
  config.zeroshot.checkpoint = CLIP
  config.zeroshot.classnames, config.zeroshot.templates = str(tmp_path / "c.txt"), str(tmp_path / "t.txt")
  (tmp_path / "c.txt").write_text("tench\ngoldfish\n")
  (tmp_path / "t.txt").write_text("a photo of a {}.\n")
  with pytest.raises(ValueError, match="has 2 classes but the task has 4"):
    zeroshot.zeroshot_config_head(config, num_classes=4)


def test_run_config_hook_builds_the_zero_shot_model(tmp_path, monkeypatch):
  """--config.head_init=zeroshot: the run's model normalises features and starts from the text head."""
  monkeypatch.setattr(hub, "DEFAULT_CACHE", str(tmp_path))  # the head cache goes here, not to ~/.cache
  config = config_base.get_config("linear")
  config.task, config.data.image_size = "dtd", 32
  config.model.variant, config.model.style, config.model.projection_dim = "mu/8", "clip", 16
  config.pretrained.path = CLIP  # a whole CLIP: the image tower and, by default, the zero-shot head's source
  config.head_init = "zeroshot"
  (tmp_path / "dtd.txt").write_text("".join(f"texture {i}\n" for i in range(47)))
  (tmp_path / "templates.txt").write_text("a photo of a {}.\na close-up photo of {}.\n")
  config.zeroshot.classnames, config.zeroshot.templates = str(tmp_path / "dtd.txt"), str(tmp_path / "templates.txt")
  config_checks.validate_config(config)
  setup = model_setup.build(config)
  assert setup.model.normalize_feature
  assert {setup.labels[k] for k in ("proj/kernel", "head/kernel", "head/bias")} == {"head"}
  # The sweep starts every seed from this head (and the checkpoint's projection), not from a random one.
  assert {"proj/kernel", "head/kernel", "head/bias", "encoder/block_0/attn/qkv/kernel"} <= setup.loaded
  proj = read_clip_text(CLIP).visual_proj
  np.testing.assert_array_equal(setup.trainable["proj/kernel"], proj)
  # Every class column is logit_scale x a unit-norm text embedding.
  np.testing.assert_allclose(np.linalg.norm(setup.trainable["head/kernel"], axis=0), REF["zs_logit_scale"],
                             rtol=1e-5)
  assert len(os.listdir(tmp_path / "zeroshot")) == 1


def test_runs_and_sweeps_recorded_before_head_init_still_match():
  """A fresh head leaves a sweep's config hash as it was; a zero-shot head (and its source) is another sweep."""
  config = config_base.get_config("linear")
  fresh = trial_log.sweep_defining_values(config)
  assert not any(k.startswith(("head_init", "zeroshot")) for k in fresh)
  config.head_init, config.zeroshot.checkpoint = "zeroshot", CLIP
  values = trial_log.sweep_defining_values(config)
  assert values["head_init"] == "zeroshot" and values["zeroshot.checkpoint"] == CLIP
  # A single run recorded before the fields existed resumes under the defaults.
  current = run_config.defining_values(json.loads(config_base.get_config("linear").to_json()),
                                       run_config.RUN_DEFINING)
  recorded = {k: v for k, v in current.items() if not k.startswith(("head_init", "zeroshot"))}
  assert run_config.differences(recorded, current) == []
