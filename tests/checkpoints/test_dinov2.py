"""DINOv2 import against timm: LayerScale weights, antialiased position-embedding resampling, style checks.

The fixtures (made by tests/fixtures/make_dinov2_reference.py with torch + timm) hold timm's own
`vit_base_patch14_dinov2` at a tiny size ('mu/14': width 32, depth 2, heads 2, MLP 64, patch 14), random weights,
native at 70px (5 x 5 grid), headless, with timm's pooled features. These tests need neither torch nor timm.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jpeft import checkpoints
from jpeft.checkpoints import CheckpointError, hub
from jpeft.models.vit import create_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "reference_dinov2.npz")))
DINOV2 = os.path.join(FIXTURES, "dinov2_mu14.safetensors")


def _shapes(model, size):
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))["params"]


MODEL = create_model("mu/14", style="dinov2", num_classes=0)
# Jitted once: eager init and apply compile one small program per op, which is slower.
INIT, APPLY = jax.jit(MODEL.init), jax.jit(MODEL.apply)


def _features(path, size):
  """jpeft's headless mu/14 DINOv2 loaded from `path` at `size` px, run on the fixture's images of that size."""
  backbone = checkpoints.load_pretrained(path, target=_shapes(MODEL, size), style="dinov2")
  params, fresh = checkpoints.merge_into(INIT(jax.random.PRNGKey(1), jnp.zeros((1, size, size, 3)))["params"],
                                         backbone)
  assert fresh == []  # every parameter, the LayerScale gains included, came from the checkpoint
  return np.asarray(APPLY({"params": params}, jnp.asarray(REF[f"images{size}"])))


def test_dinov2_features_match_timm_at_the_native_size():
  np.testing.assert_allclose(_features(DINOV2, 70), REF["features70"], atol=1e-4)


def test_dinov2_position_embeddings_resampled_as_the_study_loaded_them():
  """timm's checkpoint_filter_fn defaults (antialiased bicubic), as the study loaded DINOv2 at 224px."""
  np.testing.assert_allclose(_features(DINOV2, 42), REF["features42"], atol=1e-4)
  # The antialiased kernel matters: the non-antialiased resampling of the other styles is measurably off.
  pos = checkpoints.read_checkpoint(DINOV2)["pos_embedding"]
  plain = checkpoints.resample_pos_embedding(pos, (3, 3))
  antialiased = checkpoints.resample_pos_embedding(pos, (3, 3), antialias=True)
  assert np.abs(plain - antialiased).max() > 1e-2


def test_dinov2_original_pth_keys_load(tmp_path):
  """DINOv2's own checkpoint (the study's file) adds the iBOT mask token to timm's keys; it is not used."""
  state = load_file(DINOV2)
  state["mask_token"] = np.zeros((1, 32), np.float32)
  path = str(tmp_path / "dinov2_original.safetensors")
  save_file(state, path)
  np.testing.assert_allclose(_features(path, 70), REF["features70"], atol=1e-4)


def test_dinov2_b14_has_timms_parameter_count_at_518px():
  model = create_model("B/14", style="dinov2", num_classes=0)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(_shapes(model, 518)))
  assert count == int(REF["b14_param_count"])


def test_style_mismatch_names_both_styles():
  with pytest.raises(CheckpointError, match=r"holds a DINOv2 ViT \(LayerScale\), but the model has style='vit'.*"
                                            r"set model.style to 'dinov2'"):
    checkpoints.load_pretrained(DINOV2, target=_shapes(create_model("mu/14", num_classes=0), 70))
  with pytest.raises(CheckpointError, match="holds a plain ViT, but the model has style='dinov2'"):
    checkpoints.load_pretrained(os.path.join(FIXTURES, "vit_mu8.safetensors"), style="dinov2",
                                target=_shapes(create_model("mu/8", style="dinov2", num_classes=0), 32))


def test_registers_are_refused_by_name(tmp_path):
  state = load_file(DINOV2)
  state["register_tokens"] = np.zeros((1, 4, 32), np.float32)
  path = str(tmp_path / "dinov2_reg4.safetensors")
  save_file(state, path)
  with pytest.raises(CheckpointError, match=r"register_tokens.*registers"):
    checkpoints.read_checkpoint(path)


def test_timm_dinov2_name_resolves_to_the_hub_safetensors():
  source = hub.known_source("timm/vit_base_patch14_dinov2.lvd142m")
  assert source.repo == "timm/vit_base_patch14_dinov2.lvd142m" and source.files[0] == "model.safetensors"
