"""Trainable-parameter counts for ViT-B/16 equal the spec's table (shapes only, via jax.eval_shape)."""
import jax
import jax.numpy as jnp
import pytest

from jpeft import peft
from jpeft.models import vit
from jpeft.peft import partition

D = 768

# (method, hyperparameters, count of trainable parameters other than the head), from the spec's table.
CASES = [
    ("linear", {}, 0),
    ("full", {}, 85_798_656),
    ("bitfit", {}, 102_912),
    ("layernorm", {}, 38_400),
    ("difffit", {}, 140_544),
    ("ssf", {}, 205_824),
    *[("vpt_deep", {"num_tokens": p}, 12 * p * D) for p in (5, 100)],
    *[("vpt_shallow", {"num_tokens": p}, p * D) for p in (5, 200)],
    *[("lora", {"rank": r}, 36_864 * r) for r in (1, 32)],
    *[("adaptformer", {"bottleneck": b}, 12 * (1537 * b + 768)) for b in (4, 32)],
    *[("adapter", {"bottleneck": b}, 24 * (1537 * b + 768)) for b in (4, 32)],
    *[("pfeiffer", {"bottleneck": b}, 12 * (1537 * b + 768)) for b in (8, 64)],
    *[("convpass", {"bottleneck": b}, 24 * (1538 * b + 9 * b * b + 768)) for b in (8, 16)],
    *[("repadapter", {"bottleneck": b}, 24 * (1153 * b + 768)) for b in (8, 32)],
    *[("fact_tt", {"rank": r}, 1536 * r + 144 * r * r) for r in (8, 32)],
    *[("fact_tk", {"rank": r}, 1536 * r + 144 * r + r ** 3) for r in (16, 64)],
    *[("vqt", {"num_tokens": t}, 12 * t * D + 12 * t + 1) for t in (1, 10)],
    # Selective: block 1's attention (qkv + proj, with biases) only; block_10 / block_11 must not match.
    ("selective", {"blocks": (1,), "parts": ("attn",)}, D * 3 * D + 3 * D + D * D + D),
    ("lora+bitfit", {"lora": {"rank": 8}}, 36_864 * 8 + 102_912),
    # The study's method space (options): prompts in the last 6 blocks; the study's VPT-shallow keeps p * D.
    ("vpt_deep", {"num_tokens": 10, "num_layers": 6}, 6 * 10 * D),
    ("vpt_shallow", {"num_tokens": 50, "keep_prompts": False}, 50 * D),
    # Selective parts, block 1 only: one Dense each (kernel + bias), or a Dense and the LayerNorms.
    ("selective", {"blocks": (1,), "parts": ("qkv",)}, D * 3 * D + 3 * D),
    ("selective", {"blocks": (1,), "parts": ("proj",)}, D * D + D),
    ("selective", {"blocks": (1,), "parts": ("fc1",)}, D * 4 * D + 4 * D),
    ("selective", {"blocks": (1,), "parts": ("fc2", "ln")}, 4 * D * D + D + 4 * D),
    # Adapter wiring: one sublayer halves the modules; a learnable scale adds one scalar per module.
    ("adapter", {"bottleneck": 8, "sublayers": ("mlp",)}, 12 * (1537 * 8 + 768)),
    ("adapter", {"bottleneck": 8, "style": "parallel_pre_ln", "learnable_scale": True}, 24 * (1537 * 8 + 768) + 24),
    ("convpass", {"bottleneck": 8, "style": "sequential_after", "learnable_scale": True},
     24 * (1538 * 8 + 9 * 8 * 8 + 768) + 24),
    ("repadapter", {"bottleneck": 8, "sublayers": ("attn",), "learnable_scale": True}, 12 * (1153 * 8 + 768) + 12),
]


def _shapes(method: str, hparams: dict):
  config = hparams if "+" in method else {method: hparams}
  methods = peft.build_methods(method, config)
  model = vit.create_model("B/16", num_classes=1000, methods=methods)
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
  return jax.eval_shape(init), methods


@pytest.mark.parametrize("method,hparams,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_vit_b16_counts_match_spec(method, hparams, expected):
  params, methods = _shapes(method, hparams)
  counts = peft.count_params(params, partition.label_params(params, methods))
  assert counts["head"] == D * 1000 + 1000
  assert counts["trainable"] - counts["head"] == expected
  assert counts["total"] - counts["peft"] == 85_798_656 + counts["head"]  # the backbone is untouched


def test_summary_line():
  params, methods = _shapes("lora", {"rank": 8})
  text = peft.summary(params, partition.label_params(params, methods))
  trainable = 36_864 * 8 + 769_000
  total = 85_798_656 + 769_000 + 36_864 * 8
  assert text.splitlines()[0] == (f"trainable params: {trainable:,} || all params: {total:,} || "
                                  f"trainable%: {100 * trainable / total:.4f}")
  assert f"  peft: {36_864 * 8:,}" in text.splitlines()
  assert f"    of which peft_b (LoRA's B, at optim.lr_mult.peft_b): {8 * 2304 * 12:,}" in text.splitlines()
