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


def _logits_and_grads(attention, methods):
  model = vit.create_model("mu/8", num_classes=5, methods=methods, attention=attention)
  images = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(0), images)["params"]
  # A non-zero head, so that the gradients reach every block.
  params["head"]["kernel"] = jax.random.normal(jax.random.PRNGKey(2), params["head"]["kernel"].shape)
  weights = jax.random.normal(jax.random.PRNGKey(3), (3, 5))
  loss = lambda p: jnp.sum(weights * model.apply({"params": p}, images))
  return model.apply({"params": params}, images), jax.grad(loss)(params)


@pytest.mark.parametrize("method", ["", "vqt"])  # vqt's query tokens are masked out as keys (key_mask path)
def test_xla_attention_computes_what_the_einsum_path_computes(method):
  from jpeft import peft
  methods = peft.build_methods(method, {}) if method else ()
  logits, grads = _logits_and_grads("einsum", methods)
  xla_logits, xla_grads = _logits_and_grads("xla", methods)
  assert float(jnp.abs(logits).max()) > 1e-2
  np.testing.assert_allclose(xla_logits, logits, rtol=1e-5, atol=1e-5)
  flat, xla_flat = jax.tree_util.tree_flatten(grads)[0], jax.tree_util.tree_flatten(xla_grads)[0]
  for grad, xla_grad in zip(flat, xla_flat):  # float32 summation order: agreement relative to each leaf's scale
    assert float(jnp.abs(xla_grad - grad).max()) <= 1e-5 * float(jnp.abs(grad).max()) + 1e-7


def test_unknown_attention_implementation_is_refused_by_the_model():
  with pytest.raises(ValueError, match="Unknown attention implementation 'flash'"):
    vit.create_model("mu/8", num_classes=2, attention="flash").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("attention,expected", [("flash", "one of ('einsum', 'xla', 'cudnn')"),
                                                ("cudnn", "'cudnn' runs on NVIDIA GPUs")])
def test_an_attention_the_config_cannot_run_is_one_config_error(attention, expected):
  from jpeft import config_base
  from jpeft.train import config_checks
  from jpeft.train.errors import ConfigError
  config = config_base.demo_config()
  config_checks.validate_config(config)
  config.model.attention = attention
  with pytest.raises(ConfigError, match="model.attention") as error:
    config_checks.validate_config(config)
  assert expected in str(error.value)
