"""DINOv2's LayerScale in the jpeft ViT, and every registered PEFT method on it.

Numerics against timm live in tests/checkpoints/test_dinov2.py; here LayerScale is checked against its definition
(a per-channel gain on each residual branch equals that gain folded into the branch's output Dense) and each
method is built, run and, where re-parameterisable, merged on the tiny LayerScale model.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeft import peft
from jpeft.models import vit
from jpeft.peft import base, partition

IMAGES = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))


def _model(methods=(), style="dinov2"):
  return vit.create_model("mu/8", style=style, num_classes=5, methods=tuple(methods))


def _random(model, seed):
  """Flat random parameters: N(1, 0.2) for scales and gains, N(0, 0.2) for the rest (zero inits then matter)."""
  shapes = partition.flatten(jax.eval_shape(model.init, jax.random.key(0), IMAGES)["params"])
  rng = np.random.default_rng(seed)
  gain = lambda k: k.endswith("scale") or "gamma" in k or k.rsplit("/", 1)[-1] in ("ls1", "ls2")
  return {k: jnp.asarray(gain(k) + 0.2 * rng.normal(size=v.shape), jnp.float32) for k, v in sorted(shapes.items())}


@functools.lru_cache(maxsize=None)
def _apply(model):
  return jax.jit(lambda p, x, mf: model.apply({"params": p}, x, merge_factor=mf))


def _logits(model, flat, merge_factor=1.0):
  return np.asarray(_apply(model)(partition.unflatten(flat), IMAGES, jnp.float32(merge_factor)))


def test_layer_scale_is_a_gain_on_each_branch_output():
  """DINOv2 with gains g1, g2 == the plain ViT whose attn/proj and mlp/fc2 (kernel and bias) are scaled by them."""
  dinov2 = _random(_model(), seed=0)
  assert dinov2["encoder/block_0/ls1"].shape == dinov2["encoder/block_1/ls2"].shape == (32,)
  folded = {k: v for k, v in dinov2.items() if not k.endswith(("/ls1", "/ls2"))}
  for block in ("encoder/block_0", "encoder/block_1"):
    for gain, dense in (("ls1", "attn/proj"), ("ls2", "mlp/fc2")):
      for leaf in ("kernel", "bias"):
        folded[f"{block}/{dense}/{leaf}"] = folded[f"{block}/{dense}/{leaf}"] * dinov2[f"{block}/{gain}"]
  np.testing.assert_allclose(_logits(_model(), dinov2), _logits(_model(style="vit"), folded), rtol=1e-5, atol=1e-5)
  assert np.abs(_logits(_model(style="vit"), folded) - _logits(_model(style="vit"), {
      k: v for k, v in dinov2.items() if not k.endswith(("/ls1", "/ls2"))})).max() > 1e-3


def test_layer_scale_starts_at_timms_init_value_and_trains_with_drop_path():
  model = vit.create_model("mu/8", style="dinov2", num_classes=5, drop_path_rate=0.9)
  params = jax.jit(model.init)(jax.random.key(0), IMAGES)["params"]
  np.testing.assert_array_equal(params["encoder"]["block_1"]["ls2"], np.full(32, 1e-5, np.float32))
  params = partition.unflatten(_random(model, seed=0))
  train = jax.jit(lambda p, rng: model.apply({"params": p}, IMAGES, train=True, rngs={"dropout": rng}))
  dropped = np.asarray(train(params, jax.random.key(3)))
  assert np.all(np.isfinite(dropped)) and not np.allclose(dropped, _logits(_model(), partition.flatten(params)))


# Defaults sized for ViT-B/16 that the tiny widths (32, 64, 96) cannot take: group and block sizes must divide them.
_TINY = {"road": {"group_size": 8}, "c3a": {"block_size": 16}}


@pytest.mark.parametrize("name", sorted(base.registry()))
def test_every_method_runs_and_merges_on_dinov2(name):
  methods = peft.build_methods(name, _TINY)
  model = _model(methods)
  flat = _random(model, seed=1)
  labels = partition.label_params(partition.unflatten(flat), methods)
  # The gains are backbone weights: trained by 'full' and by 'selective' (block 0's attn by default), frozen by
  # the methods that leave the backbone alone.
  assert labels["encoder/block_0/ls1"] == ("backbone" if name in ("full", "selective") else "frozen")
  logits = _logits(model, flat, 0.6)
  assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
  if not methods[0].mergeable:
    return
  merged = partition.flatten(peft.merge(partition.unflatten(flat), methods, 0.6))
  plain = _model()
  assert set(merged) == set(partition.flatten(jax.eval_shape(plain.init, jax.random.key(0), IMAGES)["params"]))
  np.testing.assert_allclose(_logits(plain, merged), logits, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("parts, gains", [(("attn",), {"ls1"}), (("mlp",), {"ls2"}), (("attn", "mlp"), {"ls1", "ls2"}),
                                          (("qkv", "fc2", "ln"), set())])
def test_selective_attn_and_mlp_take_their_layer_scale_gain(parts, gains):
  """A selected sublayer includes the gain on its residual branch; finer parts and other blocks do not."""
  methods = peft.build_methods("selective", {"selective": {"blocks": (1,), "parts": parts}})
  model = _model(methods)
  labels = partition.label_params(partition.unflatten(_random(model, seed=0)), methods)
  selected = {k.rsplit("/", 1)[-1] for k, g in labels.items() if g == base.BACKBONE and k.endswith(("/ls1", "/ls2"))}
  assert selected == gains
  assert all(labels[f"encoder/block_0/{gain}"] != base.BACKBONE for gain in ("ls1", "ls2"))
