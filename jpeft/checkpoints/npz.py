"""The original Google ViT `.npz` layout (google-research/vision_transformer, AugReg) <-> jpeft parameters.

Google layout (flat keys; D width, H heads, hd = D / H; kernels [in, out] as in Flax):
  embedding/{kernel [p, p, 3, D], bias [D]}   cls [1, 1, D]   Transformer/posembed_input/pos_embedding [1, 1+N, D]
  Transformer/encoderblock_{i}/LayerNorm_0/{scale, bias}                          -> ln1
  Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/{query,key,value}/kernel [D, H, hd], bias [H, hd]
                                                                                  -> attn/qkv (fused [q | k | v])
  Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/out/{kernel [H, hd, D], bias [D]} -> attn/proj
  Transformer/encoderblock_{i}/LayerNorm_2/{scale, bias}                          -> ln2
  Transformer/encoderblock_{i}/MlpBlock_3/Dense_{0,1}/{kernel, bias}              -> mlp/fc1, mlp/fc2
  Transformer/encoder_norm/{scale, bias} -> norm     head/{kernel, bias} -> head     pre_logits/* -> dropped
The ImageNet-21K `ViT-B_16.npz` carries a `pre_logits` representation layer (Dense + tanh) before its 21K head;
fine-tuning starts from the LayerNorm'd CLS token as in the study, so that layer is dropped on load.
Some files nest everything under `opt/target/` (saved optimizer state); that prefix is stripped.
"""
from __future__ import annotations

import os
import re
import zipfile
from typing import Any, Mapping

import numpy as np

from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.tree import flatten, unflatten

_ATTN = "MultiHeadDotProductAttention_1"
_BLOCK = re.compile(r"Transformer/encoderblock_(\d+)/")
# Per-block renames that are pure copies (no reshape): Google sub-path -> jpeft sub-path.
_BLOCK_COPIES = {
    "LayerNorm_0/scale": "ln1/scale", "LayerNorm_0/bias": "ln1/bias",
    "LayerNorm_2/scale": "ln2/scale", "LayerNorm_2/bias": "ln2/bias",
    "MlpBlock_3/Dense_0/kernel": "mlp/fc1/kernel", "MlpBlock_3/Dense_0/bias": "mlp/fc1/bias",
    "MlpBlock_3/Dense_1/kernel": "mlp/fc2/kernel", "MlpBlock_3/Dense_1/bias": "mlp/fc2/bias",
}
_TOP_COPIES = {
    "embedding/kernel": "embedding/kernel", "embedding/bias": "embedding/bias", "cls": "cls",
    "Transformer/posembed_input/pos_embedding": "pos_embedding",
    "Transformer/encoder_norm/scale": "norm/scale", "Transformer/encoder_norm/bias": "norm/bias",
    "head/kernel": "head/kernel", "head/bias": "head/bias",
}
_DROPPED = ("pre_logits/kernel", "pre_logits/bias")
_REQUIRED = {"embedding/kernel": 4, "cls": 3, "Transformer/posembed_input/pos_embedding": 3}


def _get(arrays: Mapping[str, np.ndarray], key: str, ndim: int, source: str) -> np.ndarray:
  if key not in arrays:
    raise CheckpointError(f"{source}: the Google ViT layout needs '{key}', which the file lacks. Is this a "
                          "plain ViT checkpoint from google-research/vision_transformer (not big_vision, "
                          "not a hybrid ResNet-ViT)?")
  value = np.asarray(arrays[key])
  if value.ndim != ndim:
    raise CheckpointError(f"{source}: '{key}' has shape {value.shape}, expected a {ndim}-d array in the "
                          "Google ViT layout; the file is not a plain ViT checkpoint.")
  return value


def from_google(arrays: Mapping[str, np.ndarray], source: str = "checkpoint") -> dict[str, Any]:
  """Google-layout flat arrays -> nested jpeft parameters (numpy), including `head` when present.

  `source` names the file in error messages. Raises CheckpointError on unknown or missing keys.
  """
  if "opt/target/embedding/kernel" in arrays:
    arrays = {k[len("opt/target/"):]: v for k, v in arrays.items() if k.startswith("opt/target/")}
  for key, ndim in _REQUIRED.items():  # checked first: a non-ViT file fails here with the clearest message
    _get(arrays, key, ndim, source)
  blocks = sorted({int(m.group(1)) for k in arrays if (m := _BLOCK.match(k))})
  if blocks != list(range(len(blocks))):
    raise CheckpointError(f"{source}: encoder blocks {blocks} are not numbered 0..{len(blocks) - 1}; "
                          "the file is truncated or not a ViT checkpoint.")
  out, used = {}, set(_DROPPED)
  for key, name in _TOP_COPIES.items():
    if key in arrays:
      out[name] = np.asarray(arrays[key])
      used.add(key)
  for i in blocks:
    prefix = f"Transformer/encoderblock_{i}/"
    for key, name in _BLOCK_COPIES.items():
      out[f"encoder/block_{i}/{name}"] = _get(arrays, prefix + key, 2 if key.endswith("kernel") else 1, source)
      used.add(prefix + key)
    attn = f"{prefix}{_ATTN}/"
    # [D, H, hd] -> [D, H * hd]: flattening heads in order gives the [heads * head_dim] columns the fused
    # qkv of jpeft (and timm) uses.
    kernels = [_get(arrays, f"{attn}{n}/kernel", 3, source) for n in ("query", "key", "value")]
    biases = [_get(arrays, f"{attn}{n}/bias", 2, source) for n in ("query", "key", "value")]
    out[f"encoder/block_{i}/attn/qkv/kernel"] = np.concatenate([k.reshape(k.shape[0], -1) for k in kernels], 1)
    out[f"encoder/block_{i}/attn/qkv/bias"] = np.concatenate([b.reshape(-1) for b in biases])
    proj = _get(arrays, f"{attn}out/kernel", 3, source)
    out[f"encoder/block_{i}/attn/proj/kernel"] = proj.reshape(-1, proj.shape[-1])
    out[f"encoder/block_{i}/attn/proj/bias"] = _get(arrays, f"{attn}out/bias", 1, source)
    used.update(f"{attn}{n}/{w}" for n in ("query", "key", "value", "out") for w in ("kernel", "bias"))
  extra = sorted(set(arrays) - used)
  if extra:
    raise CheckpointError(f"{source}: keys {extra[:8]}{' ...' if len(extra) > 8 else ''} have no place in a "
                          "plain ViT (Google layout). Hybrid (ResNet stem) and big_vision checkpoints are not "
                          "supported; use a plain google-research/vision_transformer or AugReg ViT file.")
  return unflatten(out)


def to_google(params: Mapping[str, Any], num_heads: int) -> dict[str, np.ndarray]:
  """Nested jpeft plain-ViT parameters -> Google-layout flat float32 arrays (inverse of `from_google`)."""
  flat = {k: np.asarray(v, np.float32) for k, v in flatten(params).items()}
  out = {}
  for key, name in _TOP_COPIES.items():
    if name in flat:
      out[key] = flat.pop(name)
  blocks = sorted({int(m.group(1)) for k in flat if (m := re.match(r"encoder/block_(\d+)/", k))})
  for i in blocks:
    prefix, ours = f"Transformer/encoderblock_{i}/", f"encoder/block_{i}/"
    for key, name in _BLOCK_COPIES.items():
      if ours + name in flat:
        out[prefix + key] = flat.pop(ours + name)
    qkv_kernel = flat.pop(ours + "attn/qkv/kernel", None)
    qkv_bias = flat.pop(ours + "attn/qkv/bias", None)
    proj_kernel = flat.pop(ours + "attn/proj/kernel", None)
    if qkv_kernel is None or qkv_bias is None or proj_kernel is None:
      raise CheckpointError(f"save_npz: block {i} lacks its attention weights (attn/qkv/kernel, attn/qkv/bias, "
                            "attn/proj/kernel); pass the full backbone parameter tree.")
    width = qkv_kernel.shape[0]
    if qkv_kernel.shape != (width, 3 * width) or width % num_heads:
      raise CheckpointError(f"save_npz: encoder/block_{i}/attn/qkv/kernel has shape {qkv_kernel.shape}, "
                            f"expected ({width}, {3 * width}) with width divisible by num_heads={num_heads}.")
    head_dim = width // num_heads
    attn = f"{prefix}{_ATTN}/"
    for n, kernel, bias in zip(("query", "key", "value"), np.split(qkv_kernel, 3, 1), np.split(qkv_bias, 3)):
      out[f"{attn}{n}/kernel"] = kernel.reshape(width, num_heads, head_dim)
      out[f"{attn}{n}/bias"] = bias.reshape(num_heads, head_dim)
    out[f"{attn}out/kernel"] = proj_kernel.reshape(num_heads, head_dim, width)
    out[f"{attn}out/bias"] = flat.pop(ours + "attn/proj/bias")
  if flat:
    raise CheckpointError(f"save_npz: parameters {sorted(flat)[:8]} have no place in the Google ViT layout, "
                          "which holds a plain ViT only (no CLIP ln_pre/proj, no PEFT parameters: merge or drop "
                          "them first).")
  return out


def save_npz(params: Mapping[str, Any], path: str, *, num_heads: int) -> None:
  """Writes plain-ViT parameters (nested, jpeft names, numpy or jax arrays) as a Google-layout `.npz`.

  The file loads with `load` here, with timm's `_load_weights` and with google-research/vision_transformer.
  `num_heads` is needed to split the fused qkv into per-head [D, H, hd] kernels. Writes atomically.
  """
  arrays = to_google(params, num_heads)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:  # a file object, so numpy does not append '.npz' to the name
    np.savez(f, **arrays)
  os.replace(tmp, path)


def read_arrays(path: str) -> dict[str, np.ndarray]:
  """All arrays of an `.npz` file, with a CheckpointError (not a zipfile/pickle error) when it is unreadable."""
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except FileNotFoundError:
    raise CheckpointError(f"Checkpoint file '{path}' does not exist.") from None
  except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
    raise CheckpointError(f"Cannot read '{path}' as an .npz checkpoint ({type(e).__name__}: {e}). The file is "
                          "corrupt or truncated (an interrupted download?): delete it and download it again."
                          ) from None


def load(path: str) -> dict[str, Any]:
  """Reads a Google-layout ViT `.npz` into nested jpeft parameters (numpy), `head` included when present.

  Shapes: embedding/kernel [p, p, 3, D], cls [1, 1, D], pos_embedding [1, 1+N, D], encoder/block_i/attn/qkv/
  kernel [D, 3D], ... (see `jpeft/models/vit.py`). The `pre_logits` layer is dropped.
  """
  return from_google(read_arrays(path), source=path)
