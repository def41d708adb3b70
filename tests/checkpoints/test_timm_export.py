"""`jpeft.export`'s timm layout: jpeft's merged export, loaded by timm (fixture), computes jpeft's logits."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open

from jpeft import export, peft
from jpeft.checkpoints import statedict
from jpeft.models import vit
from jpeft.peft import partition

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
# As in make_export_reference.py, which wrote the files and ran timm on the exported one.
METHOD, PEFT = "lora+ssf", {"lora": {"rank": 3}, "ssf": {}}


def _read(name):
  with safe_open(os.path.join(FIXTURES, name), framework="np") as f:
    return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_export_of_the_fixture_parameters_is_the_file_timm_ran():
  params, _ = _read("export_mu8_params.safetensors")
  committed, metadata = _read("export_mu8_timm.safetensors")
  tensors = export.timm_state_dict(partition.unflatten(params), peft.build_methods(METHOD, PEFT))
  assert set(tensors) == set(committed)
  for key, value in tensors.items():
    np.testing.assert_array_equal(value, committed[key], err_msg=key)
  assert export.timm_metadata(*export.timm_architecture("mu/8", "vit", 32, 5)) == metadata
  assert json.loads(metadata[export.TIMM_METADATA_KEY]) == dict(model="vit_base_patch16_224", kwargs=dict(
      num_classes=5, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, img_size=32))


def test_timm_on_the_export_gives_the_unmerged_models_logits():
  params, _ = _read("export_mu8_params.safetensors")
  reference = np.load(os.path.join(FIXTURES, "export_reference.npz"))
  model = vit.create_model("mu/8", num_classes=5, methods=peft.build_methods(METHOD, PEFT))
  logits = jax.jit(model.apply)({"params": partition.unflatten(params)}, jnp.asarray(reference["images"]))
  np.testing.assert_allclose(np.asarray(logits), reference["timm_logits"], atol=1e-4, rtol=0)
  assert np.abs(reference["timm_logits"]).max() > 0.5  # not a degenerate (near-zero) output


def test_timm_layout_reads_back_as_written():
  params, _ = _read("export_mu8_params.safetensors")
  plain = {k: v for k, v in params.items() if "lora" not in k and "ssf" not in k}
  back = partition.flatten(statedict.from_state_dict(statedict.to_timm(plain)))
  assert set(back) == set(plain)
  for key, value in plain.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_unmergeable_methods_name_the_formats_that_work():
  with pytest.raises(export.ExportError, match=r"vpt_deep.*--format=adapter"):
    export.timm_state_dict({}, peft.build_methods("vpt_deep", {"vpt_deep": {"num_tokens": 2}}))
  with pytest.raises(export.ExportError, match="'onnx'.*'timm'.*'adapter'"):
    export.export_run("unused", format="onnx")


def test_clip_projection_folds_into_the_head():
  params, _ = _read("export_mu8_params.safetensors")
  rng = np.random.default_rng(3)
  flat = {k: v for k, v in params.items() if "lora" not in k and "ssf" not in k and k != "embedding/bias"}
  flat.update({"ln_pre/scale": 1 + 0.1 * rng.normal(size=32), "ln_pre/bias": 0.1 * rng.normal(size=32),
               "proj/kernel": rng.normal(size=(32, 16)), "head/kernel": rng.normal(size=(16, 5))})
  flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  tensors = export.timm_state_dict(partition.unflatten(flat), ())
  # head(proj(x)) = x @ (P @ W) + b: timm's CLIP classifier is one Linear [classes, width].
  np.testing.assert_allclose(tensors["head.weight"], (flat["proj/kernel"] @ flat["head/kernel"]).T, rtol=1e-6)
  np.testing.assert_array_equal(tensors["norm_pre.weight"], flat["ln_pre/scale"])
  assert "patch_embed.proj.bias" not in tensors and not any("proj/kernel" in k for k in tensors)
