"""jpeft's checkpoint import against timm: logits from every supported layout, resampling, and error messages.

The fixtures (tests/fixtures, made by make_reference.py with torch + timm) hold tiny random-weight timm models:
a plain ViT ('mu/8': width 32, depth 2, heads 2, MLP 64, patch 8, 32px, 5 classes) and a CLIP-style tower
(projection 16), with timm's outputs. These tests need neither torch nor timm.
"""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jpeft import checkpoints
from jpeft.checkpoints import CheckpointError, hub, npz
from jpeft.checkpoints.tree import flatten
from jpeft.models.vit import create_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "reference.npz")))
VIT_ST = os.path.join(FIXTURES, "vit_mu8.safetensors")
VIT_NPZ = os.path.join(FIXTURES, "vit_mu8.npz")


def fixture(name):
  return os.path.join(FIXTURES, name)


def shapes(model, size=(32, 32)):
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *size, 3)))["params"]


def run(model, params, images):
  return np.asarray(model.apply({"params": params}, jnp.asarray(images)))


def load_and_run(model, path, images, **kw):
  size = images.shape[1:3]
  backbone = checkpoints.load_pretrained(path, target=shapes(model, size), **kw)
  init = model.init(jax.random.PRNGKey(1), jnp.zeros((1, *size, 3)))["params"]
  params, fresh = checkpoints.merge_into(init, backbone)
  return run(model, params, images), fresh


@pytest.mark.parametrize("path", [VIT_ST, VIT_NPZ], ids=["safetensors", "npz"])
def test_plain_vit_logits_match_timm(path):
  logits, fresh = load_and_run(create_model("mu/8", num_classes=5), path, REF["images32"], keep_head=True)
  np.testing.assert_allclose(logits, REF["vit_logits"], atol=1e-4)
  assert fresh == []


def test_head_is_dropped_by_default_and_reported_fresh():
  model = create_model("mu/8", num_classes=3)  # a new task: the 5-class head does not fit and is not wanted
  backbone = checkpoints.load_pretrained(VIT_NPZ, target=shapes(model))
  assert "head" not in backbone
  _, fresh = checkpoints.merge_into(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"], backbone)
  assert fresh == ["head/bias", "head/kernel"]


@pytest.mark.parametrize("size,grid,key", [((48, 48), None, "vit48_logits"), ((32, 48), (4, 6), "vit32x48_logits")])
def test_position_embeddings_resampled_like_timm(size, grid, key):
  images = REF[f"images{size[0]}" + (f"x{size[1]}" if size[0] != size[1] else "")]
  logits, _ = load_and_run(create_model("mu/8", num_classes=5), VIT_ST, images, keep_head=True, grid=grid)
  np.testing.assert_allclose(logits, REF[key], atol=1e-4)


@pytest.mark.parametrize("name", ["clip_mu8_timm", "clip_mu8_openai", "clip_mu8_hf"])
def test_clip_tower_features_match_timm(name):
  model = create_model("mu/8", style="clip", num_classes=0, projection_dim=16)
  features, fresh = load_and_run(model, fixture(f"{name}.safetensors"), REF["images32"], style="clip")
  np.testing.assert_allclose(features, REF["clip_features"], atol=1e-4)
  assert fresh == []


def test_clip_projection_dropped_when_model_has_none():
  model = create_model("mu/8", style="clip", num_classes=4)  # the study's CLIP: the task head replaces proj
  backbone = checkpoints.load_pretrained(fixture("clip_mu8_hf.safetensors"), target=shapes(model), style="clip")
  assert "proj" not in backbone and "ln_pre" in backbone


def test_npz_and_safetensors_give_the_same_parameters():
  a, b = flatten(checkpoints.read_checkpoint(VIT_NPZ)), flatten(checkpoints.read_checkpoint(VIT_ST))
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_allclose(a[key], b[key], atol=1e-7, err_msg=key)


def test_save_npz_writes_the_layout_timm_reads(tmp_path):
  """save_npz of the timm weights reproduces the timm-verified fixture array for array (pre_logits aside)."""
  path = str(tmp_path / "saved.npz")
  npz.save_npz(checkpoints.read_checkpoint(VIT_ST), path, num_heads=2)
  saved, expected = dict(np.load(path)), dict(np.load(VIT_NPZ))
  assert saved.keys() == {k for k in expected if not k.startswith("pre_logits/")}
  for key, value in saved.items():
    assert value.shape == expected[key].shape, key
    np.testing.assert_allclose(value, expected[key], atol=1e-7, err_msg=key)


def test_save_npz_refuses_clip_and_peft_parameters(tmp_path):
  clip = checkpoints.read_checkpoint(fixture("clip_mu8_timm.safetensors"))
  with pytest.raises(CheckpointError, match=r"ln_pre.*plain ViT only"):
    npz.save_npz(clip, str(tmp_path / "clip.npz"), num_heads=2)


def test_peft_parameters_in_target_are_ignored_and_fresh():
  model = create_model("mu/8", num_classes=5)
  target = shapes(model)
  lora = {"kernel": jax.ShapeDtypeStruct((32, 4), jnp.float32)}
  target["encoder"]["block_0"]["attn"]["lora_a"] = lora
  backbone = checkpoints.load_pretrained(VIT_ST, target=target)
  init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target)
  params, fresh = checkpoints.merge_into(init, backbone)
  assert fresh == ["encoder/block_0/attn/lora_a/kernel", "head/bias", "head/kernel"]
  np.testing.assert_array_equal(params["cls"], backbone["cls"])


# ---- bad input: each error names the parameter (and both shapes) in one paragraph ----

def test_wrong_shape_names_parameter_and_both_shapes():
  model = create_model("mu/4", num_classes=5)  # patch 4 where the checkpoint has patch 8
  with pytest.raises(CheckpointError) as e:
    checkpoints.load_pretrained(VIT_NPZ, target=shapes(model))
  assert "'embedding/kernel' has shape (8, 8, 3, 32) in the checkpoint but (4, 4, 3, 32) in the model" in str(e.value)
  assert "\n" not in str(e.value)


def test_missing_key_is_named(tmp_path):
  state = load_file(VIT_ST)
  del state["blocks.1.mlp.fc2.bias"]
  save_file(state, str(tmp_path / "cut.safetensors"))
  with pytest.raises(CheckpointError, match=r"'encoder/block_1/mlp/fc2/bias' is missing \(the model expects shape \(32,\)\)"):
    checkpoints.load_pretrained(str(tmp_path / "cut.safetensors"), target=shapes(create_model("mu/8", num_classes=5)))


def test_extra_block_is_named():
  model = create_model("mu/8", num_classes=5, depth=1)
  with pytest.raises(CheckpointError, match=r"'encoder/block_1/attn/qkv/kernel' \(32, 96\) is not in the model"):
    checkpoints.load_pretrained(VIT_ST, target=shapes(model))


def test_unknown_state_dict_key_is_named(tmp_path):
  state = load_file(VIT_ST)
  state["blocks.0.attn.q_norm.weight"] = np.ones(16, np.float32)  # q/k norm: not part of the jpeft ViT
  save_file(state, str(tmp_path / "qk_norm.safetensors"))
  with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.q_norm\.weight"):
    checkpoints.read_checkpoint(str(tmp_path / "qk_norm.safetensors"))


def test_npz_missing_attention_kernel_is_named(tmp_path):
  arrays = dict(np.load(VIT_NPZ))
  key = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/kernel"
  del arrays[key]
  np.savez(str(tmp_path / "cut.npz"), **arrays)
  with pytest.raises(CheckpointError, match=key):
    checkpoints.read_checkpoint(str(tmp_path / "cut.npz"))


@pytest.mark.parametrize("name", ["vit_mu8.npz", "vit_mu8.safetensors"])
def test_corrupt_file_gives_clear_error(tmp_path, name):
  data = open(fixture(name), "rb").read()
  path = tmp_path / name
  path.write_bytes(data[:len(data) // 2])  # an interrupted download
  with pytest.raises(CheckpointError, match="corrupt or truncated"):
    checkpoints.load_pretrained(str(path), target=shapes(create_model("mu/8", num_classes=5)))


def test_unrecognised_file_gives_clear_error(tmp_path):
  path = tmp_path / "weights.dat"
  path.write_bytes(b"not a checkpoint at all")
  with pytest.raises(CheckpointError, match="Cannot tell the format"):
    checkpoints.read_checkpoint(str(path))


def test_torch_pickle_without_torch_says_so(tmp_path):
  try:
    import torch  # noqa: F401
    pytest.skip("torch is installed here; the error path is for installs without it")
  except ImportError:
    pass
  path = tmp_path / "model.pth"
  path.write_bytes(b"\x80\x02}q\x00.")  # a pickle header, as a legacy torch.save writes
  with pytest.raises(CheckpointError, match="needs torch.*convert the file"):
    checkpoints.read_checkpoint(str(path))


def test_style_mismatch_is_explained():
  model = create_model("mu/8", style="clip", num_classes=0, projection_dim=16)
  with pytest.raises(CheckpointError, match="holds a plain ViT, but the model has style='clip'"):
    checkpoints.load_pretrained(VIT_ST, target=shapes(model), style="clip")


# ---- names, cache and downloads (no network: file:// URLs and a stubbed hub) ----

def test_known_names():
  assert hub.known_source("ViT-B_16").url == "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"
  augreg = "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
  assert hub.known_source(augreg).url == f"https://storage.googleapis.com/vit_models/augreg/{augreg}.npz"
  assert hub.known_source("clip-vit-b16-openai").repo == "timm/vit_base_patch16_clip_224.openai"
  assert hub.known_source("openai/clip-vit-base-patch16").files[0] == "model.safetensors"
  assert hub.known_source("ViT-Q_99") is None
  with pytest.raises(CheckpointError, match="neither an existing file nor a known checkpoint name.*ViT-B_16"):
    hub.resolve("ViT-Q_99")


def test_file_put_in_cache_by_hand_is_used(tmp_path):
  target = tmp_path / "vit_models" / "imagenet21k" / "ViT-B_16.npz"
  target.parent.mkdir(parents=True)
  shutil.copy(VIT_NPZ, target)
  backbone = checkpoints.load_pretrained("ViT-B_16", target=shapes(create_model("mu/8", num_classes=5)),
                                         cache_dir=str(tmp_path))
  assert backbone["pos_embedding"].shape == (1, 17, 32)


def test_url_download_fills_cache(tmp_path):
  source = hub.Source("tiny", url="file://" + VIT_NPZ, cache_path="vit_models/tiny.npz")
  path = hub.fetch(source, str(tmp_path))
  assert path == str(tmp_path / "vit_models" / "tiny.npz")
  assert open(path, "rb").read() == open(VIT_NPZ, "rb").read()
  assert os.listdir(tmp_path / "vit_models") == ["tiny.npz"]  # no partial file left behind


def test_offline_url_error_says_where_to_put_the_file(tmp_path):
  source = hub.Source("ViT-B_16", url="file:///nonexistent/ViT-B_16.npz", cache_path="vit_models/ViT-B_16.npz")
  with pytest.raises(CheckpointError) as e:
    hub.fetch(source, str(tmp_path))
  assert f"save it as {tmp_path / 'vit_models' / 'ViT-B_16.npz'}" in str(e.value)
  assert not (tmp_path / "vit_models" / "ViT-B_16.npz").exists()


def test_offline_hub_error_says_where_to_put_the_file(tmp_path, monkeypatch):
  def offline(repo, filename, path):
    raise OSError("offline")
  monkeypatch.setattr(hub, "_fetch_hf", offline)
  with pytest.raises(CheckpointError) as e:
    hub.resolve("clip-vit-b16-openai", str(tmp_path))
  message = str(e.value)
  assert "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/model.safetensors" in message
  assert str(tmp_path / "hf" / "timm--vit_base_patch16_clip_224.openai") in message


def test_bfloat16_safetensors_are_read_and_cast(tmp_path):
  from safetensors.flax import save_file as save_jax
  state = {k: jnp.asarray(v, jnp.bfloat16) for k, v in load_file(VIT_ST).items()}
  save_jax(state, str(tmp_path / "bf16.safetensors"))
  backbone = checkpoints.load_pretrained(str(tmp_path / "bf16.safetensors"),
                                         target=shapes(create_model("mu/8", num_classes=5)))
  assert backbone["cls"].dtype == np.float32
  np.testing.assert_array_equal(backbone["cls"], np.asarray(state["cls_token"], np.float32))


def test_resampling_same_grid_is_identity_and_constants_stay_constant():
  pos = np.random.default_rng(0).normal(size=(1, 17, 8)).astype(np.float32)
  np.testing.assert_allclose(checkpoints.resample_pos_embedding(pos, (4, 4)), pos, atol=1e-6)
  flat = np.full((1, 17, 8), 0.5, np.float32)
  np.testing.assert_allclose(checkpoints.resample_pos_embedding(flat, (7, 3)), np.full((1, 22, 8), 0.5), atol=1e-6)


def test_hub_falls_back_to_the_next_file_only_when_the_first_is_absent(tmp_path, monkeypatch):
  from huggingface_hub import errors
  tried = []

  def fake_hub(repo, filename, path):
    tried.append(filename)
    if filename == "model.safetensors":
      raise errors.EntryNotFoundError("model.safetensors is not in the repo")  # the hub's "404 for this file"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(VIT_ST, path)
  monkeypatch.setattr(hub, "_fetch_hf", fake_hub)
  path = hub.resolve("timm/vit_tiny.test", str(tmp_path))
  assert tried == ["model.safetensors", "pytorch_model.bin"]
  assert path == str(tmp_path / "hf" / "timm--vit_tiny.test" / "pytorch_model.bin")
