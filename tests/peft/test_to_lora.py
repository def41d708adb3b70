"""`--format=lora`: a merged weight change as a rank-R LoRA by truncated SVD (jpeft/export/to_lora.py)."""
import numpy as np
import pytest

from jpeft.export import peft_format, to_lora

P = peft_format.PREFIX


def _state(rng, depth=2, d=8, h=16):
  """A timm ViT state dict's changeable part (random)."""
  sd = {"pos_embed": rng.normal(size=(1, 5, d)), "norm.weight": rng.normal(size=d), "norm.bias": rng.normal(size=d),
        "head.weight": rng.normal(size=(3, d)), "head.bias": rng.normal(size=3)}
  for b in range(depth):
    for module, (n_out, n_in) in {"attn.qkv": (3 * d, d), "attn.proj": (d, d), "mlp.fc1": (h, d),
                                  "mlp.fc2": (d, h)}.items():
      sd[f"blocks.{b}.{module}.weight"] = rng.normal(size=(n_out, n_in))
      sd[f"blocks.{b}.{module}.bias"] = rng.normal(size=n_out)
    sd[f"blocks.{b}.norm1.weight"], sd[f"blocks.{b}.norm1.bias"] = rng.normal(size=d), rng.normal(size=d)
  return {k: v.astype(np.float32) for k, v in sd.items()}


def _trained(initial, rng, keys):
  return {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32) if k in keys else v for k, v in initial.items()}


def test_full_rank_is_exact_and_lower_ranks_keep_the_largest_singular_values():
  rng = np.random.default_rng(0)
  initial = _state(rng)
  changed = [k for k in initial if ".mlp.fc1." in k or ".attn.qkv.weight" in k] + ["blocks.1.norm1.weight", "head.bias"]
  merged = _trained(initial, rng, changed)
  tensors, fields, errors = to_lora.lora_from_delta(merged, initial, None)
  assert fields["r"] == fields["lora_alpha"] == 8 and fields["lora_bias"]  # fc1's bias changed
  assert fields["target_modules"] == r"blocks\.\d+\.(attn\.qkv|mlp\.fc1)"
  assert fields["modules_to_save"] == ["blocks.1.norm1", "head"]
  assert tensors[f"{P}blocks.0.attn.qkv.lora_A.weight"].shape == (8, 8)
  assert tensors[f"{P}blocks.0.mlp.fc1.lora_B.weight"].shape == (16, 8)
  np.testing.assert_array_equal(tensors[f"{P}blocks.0.attn.qkv.lora_B.bias"], 0)  # qkv's bias did not change
  back = to_lora.approximated(initial, tensors)
  assert set(back) == set(merged)
  for key, value in merged.items():
    np.testing.assert_allclose(back[key], value, atol=2e-6, rtol=0, err_msg=key)
  assert max(errors.values()) < 1e-5

  tensors, fields, errors = to_lora.lora_from_delta(merged, initial, 2)
  assert fields["r"] == 2 and tensors[f"{P}blocks.0.mlp.fc1.lora_A.weight"].shape == (2, 8)
  delta = merged["blocks.1.mlp.fc1.weight"].astype(np.float64) - initial["blocks.1.mlp.fc1.weight"]
  s = np.linalg.svd(delta, compute_uv=False)
  # Eckart-Young: the best rank-2 error is the norm of the dropped singular values.
  assert errors["blocks.1.mlp.fc1"] == pytest.approx(np.sqrt(np.sum(s[2:] ** 2) / np.sum(s ** 2)), rel=1e-5)
  assert errors["blocks.0.mlp.fc1"] > 0.1


def test_changes_lora_cannot_carry_and_bad_ranks_are_named():
  rng = np.random.default_rng(1)
  initial = _state(rng)
  with pytest.raises(peft_format.PeftFormatError, match=r"changes \['pos_embed'\].*--format=timm"):
    to_lora.lora_from_delta(_trained(initial, rng, ["pos_embed", "blocks.0.attn.qkv.weight"]), initial, None)
  with pytest.raises(peft_format.PeftFormatError, match=r"--rank=9 is above the layers' full rank 8"):
    to_lora.lora_from_delta(_trained(initial, rng, ["blocks.0.attn.qkv.weight"]), initial, 9)
  with pytest.raises(peft_format.PeftFormatError, match=r"--rank='0' is not a rank"):
    to_lora.parse_rank("0")
  assert to_lora.parse_rank("full") is None and to_lora.parse_rank("16") == 16
