"""Shape-level checks of the ViT family (numerics against timm live in tests/checkpoints)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft.models import vit


def _param_count(model, image_size):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3))))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def test_vit_b16_backbone_has_the_known_parameter_count():
  # 85,798,656 is the timm / Google count of ViT-B/16 without a head.
  assert _param_count(vit.create_model("B/16", num_classes=0), 224) == 85_798_656


def test_head_adds_width_times_classes_plus_bias():
  base = _param_count(vit.create_model("Ti/16", num_classes=0), 224)
  assert _param_count(vit.create_model("Ti/16", num_classes=10), 224) == base + 192 * 10 + 10


@pytest.mark.parametrize("variant,width,depth,patch", [("S/16", 384, 12, 16), ("B/32", 768, 12, 32),
                                                       ("L/16", 1024, 24, 16), ("H/14", 1280, 32, 14)])
def test_variants_decode(variant, width, depth, patch):
  spec = vit.decode_variant(variant)
  assert (spec["width"], spec["depth"], spec["patch_size"]) == (width, depth, patch)


@pytest.mark.parametrize("bad", ["B16", "X/16", "B/"])
def test_unknown_variant_is_a_clear_error(bad):
  with pytest.raises(ValueError, match="Unknown ViT variant"):
    vit.decode_variant(bad)


def test_clip_tower_has_ln_pre_projection_and_no_patch_bias():
  model = vit.create_model("mu/8", style="clip", num_classes=0, projection_dim=16)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  assert "ln_pre" in params and "bias" not in params["embedding"]
  assert params["proj"]["kernel"].shape == (32, 16) and "bias" not in params["proj"]
  assert model.apply({"params": params}, jnp.zeros((2, 32, 32, 3))).shape == (2, 16)


def test_drop_path_is_per_example_and_off_at_eval():
  model = vit.create_model("mu/8", num_classes=3, drop_path_rate=0.9)
  images = jax.random.normal(jax.random.PRNGKey(1), (8, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(0), images)["params"]
  params["head"]["kernel"] = jax.random.normal(jax.random.PRNGKey(2), params["head"]["kernel"].shape)
  eval_a = model.apply({"params": params}, images)
  eval_b = model.apply({"params": params}, images)
  train = model.apply({"params": params}, images, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  np.testing.assert_array_equal(eval_a, eval_b)
  assert not np.allclose(train, eval_a)


def test_wrong_image_size_names_both_token_counts():
  model = vit.create_model("mu/8", num_classes=3)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  with pytest.raises(ValueError, match="17 tokens but the image gives 37"):
    model.apply({"params": params}, jnp.zeros((1, 48, 48, 3)))
