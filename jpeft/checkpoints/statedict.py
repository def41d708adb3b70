"""PyTorch-style state dicts (timm, Hugging Face CLIP, OpenAI CLIP) <-> jpeft parameters, read without torch.

PyTorch stores Linear weights [out, in] and Conv2d weights [out, in, kh, kw]; jpeft (Flax) stores kernels
[in, out] and [kh, kw, in, out], so kernels are transposed on the way in. Three layouts are recognised by
their keys:
  timm `vit_*` / `vit_*_clip_*`  cls_token, pos_embed, patch_embed.proj, norm_pre, blocks.{i}.{norm1, attn.qkv,
  / `vit_*_dinov2`               attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm, head (DINOv2's
                                 original .pth, the study's file, has the same keys plus an unused mask_token)
  Hugging Face CLIP              vision_model.embeddings.{class_embedding, patch_embedding, position_embedding},
                                 vision_model.pre_layrnorm (sic), vision_model.encoder.layers.{i}.{layer_norm1,
                                 self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2},
                                 vision_model.post_layernorm, visual_projection (text_model.* is skipped)
  OpenAI CLIP (`clip.load`)      visual.{class_embedding, conv1, positional_embedding, ln_pre,
                                 transformer.resblocks.{i}.{ln_1, attn.in_proj_*, attn.out_proj, ln_2,
                                 mlp.c_fc, mlp.c_proj}, ln_post, proj} (the text tower is skipped)
The text towers of the CLIP layouts are read by `jpeft.checkpoints.clip_text` with the OPENAI_TEXT / HF_TEXT
tables below. The timm layout is also written (`to_timm`, for `jpeft.export`), by the same rule table inverted.
CLIP's bias-free visual projection becomes `proj/kernel` [D, E]. timm stores it as `head` with a zero bias
(`_convert_openai_clip`), so a pre-norm timm model whose head bias is all zeros (or absent) has its head read as
`proj`; a fine-tuned CLIP classifier (`*.openai_ft_in1k`, non-zero bias) keeps it as `head`.
"""
from __future__ import annotations

import re
import zipfile
from typing import Any, Mapping

import numpy as np

from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.tree import flatten, unflatten


def _linear(w):  # torch Linear weight [out, in] -> Flax kernel [in, out]
  return np.ascontiguousarray(np.asarray(w).T)


def _conv(w):  # torch Conv2d weight [D, 3, p, p] -> Flax Conv kernel [p, p, 3, D]
  return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 1, 0))


def _same(w):
  return np.asarray(w)


def _unconv(w):  # Flax Conv kernel [p, p, 3, D] -> torch Conv2d weight [D, 3, p, p] (inverse of _conv)
  return np.ascontiguousarray(np.asarray(w).transpose(3, 2, 0, 1))


# Each transform's inverse, for writing a layout (`to_timm`) from the same rules that read it.
_INVERSE = {_linear: _linear, _conv: _unconv, _same: _same}


def _token(w):  # CLIP class embedding [D] -> [1, 1, D]
  return np.asarray(w).reshape(1, 1, -1)


def _table(w):  # CLIP position table [1 + N, D] -> [1, 1 + N, D]
  w = np.asarray(w)
  return w[None] if w.ndim == 2 else w


def _norm(src: str, dst: str, weight="weight", bias="bias"):
  return [(rf"{src}\.{weight}", f"{dst}/scale", _same), (rf"{src}\.{bias}", f"{dst}/bias", _same)]


def _dense(src: str, dst: str, transform=_linear):
  return [(rf"{src}\.weight", f"{dst}/kernel", transform), (rf"{src}\.bias", f"{dst}/bias", _same)]


_B = r"(?P<i>\d+)"


def hf_layers(prefix: str):
  """Rules for Hugging Face CLIP's encoder layers under prefix (both towers share the block layout)."""
  return [
      *_norm(rf"{prefix}\.{_B}\.layer_norm1", "encoder/block_{i}/ln1"),
      *[(rf"{prefix}\.{_B}\.self_attn\.{n}_proj\.{w}", f"encoder/block_{{i}}/attn/{n}/{w}", _same)
        for n in "qkv" for w in ("weight", "bias")],  # fused into qkv by fuse_hf_qkv
      *_dense(rf"{prefix}\.{_B}\.self_attn\.out_proj", "encoder/block_{i}/attn/proj"),
      *_norm(rf"{prefix}\.{_B}\.layer_norm2", "encoder/block_{i}/ln2"),
      *_dense(rf"{prefix}\.{_B}\.mlp\.fc1", "encoder/block_{i}/mlp/fc1"),
      *_dense(rf"{prefix}\.{_B}\.mlp\.fc2", "encoder/block_{i}/mlp/fc2"),
  ]


# OpenAI CLIP's residual attention blocks, the same in its image and text towers (and in open_clip's).
OPENAI_BLOCKS = [
    *_norm(rf"transformer\.resblocks\.{_B}\.ln_1", "encoder/block_{i}/ln1"),
    *_dense(rf"transformer\.resblocks\.{_B}\.attn\.out_proj", "encoder/block_{i}/attn/proj"),
    (rf"transformer\.resblocks\.{_B}\.attn\.in_proj_weight", "encoder/block_{i}/attn/qkv/kernel", _linear),
    (rf"transformer\.resblocks\.{_B}\.attn\.in_proj_bias", "encoder/block_{i}/attn/qkv/bias", _same),
    *_norm(rf"transformer\.resblocks\.{_B}\.ln_2", "encoder/block_{i}/ln2"),
    *_dense(rf"transformer\.resblocks\.{_B}\.mlp\.c_fc", "encoder/block_{i}/mlp/fc1"),
    *_dense(rf"transformer\.resblocks\.{_B}\.mlp\.c_proj", "encoder/block_{i}/mlp/fc2"),
]
# (regex on the key after the layout's prefix, jpeft path with {i} for the block, transform)
_TIMM = [
    (r"cls_token", "cls", _same), (r"pos_embed", "pos_embedding", _same),
    (r"patch_embed\.proj\.weight", "embedding/kernel", _conv), (r"patch_embed\.proj\.bias", "embedding/bias", _same),
    *_norm("norm_pre", "ln_pre"), *_norm(rf"blocks\.{_B}\.norm1", "encoder/block_{i}/ln1"),
    *_dense(rf"blocks\.{_B}\.attn\.qkv", "encoder/block_{i}/attn/qkv"),
    *_dense(rf"blocks\.{_B}\.attn\.proj", "encoder/block_{i}/attn/proj"),
    *[(rf"blocks\.{_B}\.{ls}\.gamma", f"encoder/block_{{i}}/{ls}", _same) for ls in ("ls1", "ls2")],
    *_norm(rf"blocks\.{_B}\.norm2", "encoder/block_{i}/ln2"),
    *_dense(rf"blocks\.{_B}\.mlp\.fc1", "encoder/block_{i}/mlp/fc1"),
    *_dense(rf"blocks\.{_B}\.mlp\.fc2", "encoder/block_{i}/mlp/fc2"),
    *_norm("norm", "norm"), *_dense("head", "head"),
]
_HF_CLIP = [
    (r"vision_model\.embeddings\.class_embedding", "cls", _token),
    (r"vision_model\.embeddings\.patch_embedding\.weight", "embedding/kernel", _conv),
    (r"vision_model\.embeddings\.position_embedding\.weight", "pos_embedding", _table),
    *_norm(r"vision_model\.pre_layrnorm", "ln_pre"),
    *hf_layers(r"vision_model\.encoder\.layers"),
    *_norm(r"vision_model\.post_layernorm", "norm"),
    (r"visual_projection\.weight", "proj/kernel", _linear),
]
_HF_SKIP = re.compile(r"text_model\..*|text_projection\..*|logit_scale|vision_model\.embeddings\.position_ids")
_OPENAI = [
    (r"class_embedding", "cls", _token), (r"conv1\.weight", "embedding/kernel", _conv),
    (r"positional_embedding", "pos_embedding", _table), *_norm("ln_pre", "ln_pre"),
    *OPENAI_BLOCKS,
    *_norm("ln_post", "norm"), (r"proj", "proj/kernel", _same),  # OpenAI's proj is already [D, E]
]


# CLIP text towers (read by jpeft.checkpoints.clip_text into jpeft.models.clip_text's tree). open_clip's
# CustomTextCLIP has OPENAI_TEXT's keys under `text.`.
OPENAI_TEXT = [
    (r"token_embedding\.weight", "token_embedding/embedding", _same),
    (r"positional_embedding", "pos_embedding", _same),
    *OPENAI_BLOCKS, *_norm("ln_final", "norm"),
    (r"text_projection", "proj/kernel", _same),  # already [D, E]
]
HF_TEXT = [
    (r"text_model\.embeddings\.token_embedding\.weight", "token_embedding/embedding", _same),
    (r"text_model\.embeddings\.position_embedding\.weight", "pos_embedding", _same),
    *hf_layers(r"text_model\.encoder\.layers"), *_norm(r"text_model\.final_layer_norm", "norm"),
    (r"text_projection\.weight", "proj/kernel", _linear),
]


_VIT_ONLY = ("the jpeft ViT (a different architecture: registers, q/k norm, SwiGLU, average pooling?). Only plain "
             "ViT, CLIP image towers and register-free DINOv2 are supported.")


def rename(state: Mapping[str, Any], rules, source: str, layout: str, unsupported: str = _VIT_ONLY
           ) -> dict[str, np.ndarray]:
  """{torch key: array} -> {jpeft path: array} by the first rule whose regex matches the whole key; a key no
  rule matches is an error naming it (`unsupported` says what the model is and supports)."""
  compiled = [(re.compile(pattern), dst, fn) for pattern, dst, fn in rules]
  out, extra = {}, []
  for key, value in state.items():
    for pattern, dst, fn in compiled:
      if m := pattern.fullmatch(key):
        out[dst.format(**m.groupdict())] = fn(value)
        break
    else:
      extra.append(key)
  if extra:
    raise CheckpointError(f"{source}: keys {extra[:8]}{' ...' if len(extra) > 8 else ''} of this {layout} state "
                          f"dict have no place in {unsupported}")
  return out


def _inverted(rules) -> list[tuple[re.Pattern, str, Any]]:
  """Reading rules (key regex, jpeft path template, transform) -> writing rules (jpeft path regex, key template,
  inverse transform): one table defines both directions, so reading and writing a layout cannot drift apart."""
  out = []
  for pattern, dst, fn in rules:
    key = pattern.replace(_B, "{i}").replace("\\.", ".")
    path = re.escape(dst).replace(re.escape("{i}"), _B)
    out.append((re.compile(path), key, _INVERSE[fn]))
  return out


_TIMM_WRITE = _inverted(_TIMM)


def to_timm(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested (or flat) jpeft plain-ViT parameters -> a timm `VisionTransformer` state dict of float32 numpy arrays
  (torch layouts: Linear [out, in], Conv2d [D, 3, p, p]); the inverse of `from_state_dict` on the timm layout.

  Raises CheckpointError naming parameters timm's ViT has no place for (PEFT parameters, CLIP's `proj`: merge or
  fold them first, as `jpeft.export` does)."""
  flat = flatten(params) if any(isinstance(v, Mapping) for v in params.values()) else dict(params)
  out, extra = {}, []
  for path, value in flat.items():
    for pattern, key, fn in _TIMM_WRITE:
      if m := pattern.fullmatch(path):
        out[key.format(**m.groupdict())] = np.asarray(fn(np.asarray(value, np.float32)), np.float32)
        break
    else:
      extra.append(path)
  if extra:
    raise CheckpointError(f"Parameters {sorted(extra)[:8]}{' ...' if len(extra) > 8 else ''} have no place in a "
                          "timm VisionTransformer, which holds a plain ViT only: merge PEFT methods into the "
                          "backbone first (jpeft.peft.merge) and fold CLIP's projection into the head.")
  return out


def fuse_hf_qkv(flat: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  """Separate HF q/k/v projections ([D, D] torch weights) -> one fused [D, 3D] kernel, [q | k | v]."""
  out = {k: v for k, v in flat.items() if not re.search(r"/attn/[qkv]/", k)}
  for block in sorted({k.split("/attn/")[0] for k in flat if re.search(r"/attn/[qkv]/", k)}):
    parts = {}
    for n in "qkv":
      for w in ("weight", "bias"):
        key = f"{block}/attn/{n}/{w}"
        if key not in flat:
          raise CheckpointError(f"{source}: '{key}' (self_attn.{n}_proj.{w}) is missing; the file is truncated.")
        parts[n, w] = flat[key]
    out[f"{block}/attn/qkv/kernel"] = np.concatenate([parts[n, "weight"] for n in "qkv"], 0).T.copy()
    out[f"{block}/attn/qkv/bias"] = np.concatenate([parts[n, "bias"] for n in "qkv"])
  return out


def detect_layout(state: Mapping[str, Any]) -> str:
  """'timm', 'hf_clip' or 'openai_clip' from the keys of a (prefix-stripped) state dict; '' when none fits."""
  if "vision_model.embeddings.class_embedding" in state:
    return "hf_clip"
  if "visual.class_embedding" in state:
    return "openai_clip"
  if "cls_token" in state or "patch_embed.proj.weight" in state:
    return "timm"
  return ""


def from_state_dict(state: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Any]:
  """A timm / Hugging Face CLIP / OpenAI CLIP state dict of numpy arrays -> nested jpeft parameters (numpy).

  Wrappers ('model', 'state_dict', 'module.' prefixes) are unwrapped. The result may contain `head`
  (timm classifiers) and `proj` (CLIP); it contains whatever the file has, checked against a model later.
  """
  for wrapper in ("model", "state_dict"):
    if isinstance(state.get(wrapper), Mapping):
      state = state[wrapper]
  state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
  layout = detect_layout(state)
  if layout == "hf_clip":
    state = {k: v for k, v in state.items() if not _HF_SKIP.fullmatch(k)}
    flat = fuse_hf_qkv(rename(state, _HF_CLIP, source, "Hugging Face CLIP"), source)
  elif layout == "openai_clip":
    state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    flat = rename(state, _OPENAI, source, "OpenAI CLIP")
  elif layout == "timm":
    # DINOv2's iBOT mask token stands in for masked patches in pretraining; classification never uses it.
    flat = rename({k: v for k, v in state.items() if k != "mask_token"}, _TIMM, source, "timm")
    if "ln_pre/scale" in flat and "head/kernel" in flat and not np.any(flat.get("head/bias", 0)):
      flat["proj/kernel"] = flat.pop("head/kernel")  # timm's home for CLIP's bias-free projection
      flat.pop("head/bias", None)
  else:
    raise CheckpointError(f"{source}: not a ViT state dict jpeft knows (no 'cls_token' / 'patch_embed.proj.weight' "
                          "(timm), 'vision_model.embeddings.class_embedding' (Hugging Face CLIP) or "
                          f"'visual.class_embedding' (OpenAI CLIP)); its first keys are {sorted(state)[:5]}.")
  return unflatten(flat)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """All tensors of a `.safetensors` file as numpy arrays (no torch needed)."""
  from safetensors import SafetensorError
  from safetensors import flax as st_flax
  from safetensors import numpy as st_numpy
  try:
    try:
      return dict(st_numpy.load_file(path))
    except TypeError:
      # numpy has no bfloat16; jax does (via ml_dtypes), and fit_to_target casts to the model's dtype later.
      return {k: np.asarray(v) for k, v in st_flax.load_file(path).items()}
  except FileNotFoundError:
    raise CheckpointError(f"Checkpoint file '{path}' does not exist.") from None
  except (SafetensorError, ValueError, OSError, TypeError) as e:
    raise CheckpointError(f"Cannot read '{path}' as a .safetensors checkpoint ({type(e).__name__}: {e}). The file "
                          "is corrupt or truncated (an interrupted download?): download it again.") from None


def _is_torchscript(path: str) -> bool:
  """A TorchScript archive is a zip with a `code/` folder; torch.load(weights_only=True) refuses it."""
  try:
    with zipfile.ZipFile(path) as z:
      return any(n.split("/")[1:2] == ["code"] for n in z.namelist())
  except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError):
    return False


def read_torch(path: str) -> dict[str, Any]:
  """A PyTorch `.pth` / `.bin` pickle as numpy arrays. Needs torch, imported only here (jpeft never needs it)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise CheckpointError(f"'{path}' is a PyTorch pickle (.pth/.bin), which needs torch to read, and torch is not "
                          "installed. Either install torch, or convert the file once elsewhere with "
                          "`safetensors.torch.save_file(torch.load(path), 'model.safetensors')` and pass the "
                          ".safetensors file (most timm and Hugging Face checkpoints also ship one).") from None
  try:
    if _is_torchscript(path):  # OpenAI's own CLIP files (clip.load's ViT-B-16.pt) are TorchScript archives
      state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
      state = torch.load(path, map_location="cpu", weights_only=True)
  except FileNotFoundError:
    raise CheckpointError(f"Checkpoint file '{path}' does not exist.") from None
  except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
    raise CheckpointError(f"Cannot read '{path}' as a PyTorch checkpoint ({type(e).__name__}: {e}); the file is "
                          "corrupt or truncated: download it again.") from None

  def to_numpy(tree):
    if isinstance(tree, Mapping):
      return {k: to_numpy(v) for k, v in tree.items()}
    return tree.detach().float().numpy() if hasattr(tree, "detach") else tree

  return to_numpy(state)
