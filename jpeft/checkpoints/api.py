"""Reading any supported checkpoint, fitting it to a model's parameter shapes, and overlaying it on init params."""
from __future__ import annotations

import os
import re
import zipfile
from typing import Any, Mapping, Optional

import numpy as np

from jpeft.checkpoints import hub, npz, statedict
from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.resample import resample_pos_embedding
from jpeft.checkpoints.tree import flatten, unflatten

# The backbone parameters a checkpoint provides (see jpeft/models/vit.py). Anything else in a model's tree
# (PEFT parameters, the head) is initialised fresh.
_BACKBONE = re.compile(r"embedding/(kernel|bias)|cls|pos_embedding|ln_pre/(scale|bias)|norm/(scale|bias)|proj/kernel"
                       r"|encoder/block_\d+/(ls1|ls2|(ln1|ln2)/(scale|bias)|(attn/(qkv|proj)|mlp/(fc1|fc2))/(kernel|bias))")
_HEAD = ("head/kernel", "head/bias")
_STYLES = ("vit", "clip", "dinov2")  # the model styles a checkpoint's parameters tell apart (see checkpoint_style)


def detect_format(path: str) -> str:
  """'npz', 'safetensors' or 'torch', from the file's first bytes (the extension only as a fallback)."""
  try:
    with open(path, "rb") as f:
      start = f.read(16)
  except FileNotFoundError:
    raise CheckpointError(f"Checkpoint file '{path}' does not exist.") from None
  if start.startswith(b"PK\x03\x04"):  # a zip: numpy's .npz, or torch's zip-based .pth / .bin
    try:
      with zipfile.ZipFile(path) as z:
        names = z.namelist()
    except zipfile.BadZipFile:
      names = []
    if any(n.endswith("data.pkl") for n in names):
      return "torch"
    if any(n.endswith(".npy") for n in names) or path.endswith(".npz"):
      return "npz"
  # safetensors: an 8-byte little-endian header length, then the JSON header.
  if len(start) > 8 and start[8:9] == b"{":
    return "safetensors"
  if start[:1] == b"\x80":  # a legacy (non-zip) torch pickle
    return "torch"
  for ext, fmt in ((".npz", "npz"), (".safetensors", "safetensors"), (".pth", "torch"), (".pt", "torch"),
                   (".bin", "torch")):
    if path.endswith(ext):
      return fmt
  raise CheckpointError(f"Cannot tell the format of '{path}' (first bytes {start[:8]!r}): expected a Google ViT "
                        ".npz, a .safetensors state dict or a PyTorch .pth/.bin file.")


def read_checkpoint(path: str) -> dict[str, Any]:
  """Any supported file -> nested jpeft parameters (numpy), with whatever `head` / `proj` it carries."""
  fmt = detect_format(path)
  if fmt == "npz":
    return npz.load(path)
  arrays = statedict.read_safetensors(path) if fmt == "safetensors" else statedict.read_torch(path)
  return statedict.from_state_dict(arrays, source=path)


def _square_grid(tokens: int, what: str) -> tuple[int, int]:
  side = int(round(np.sqrt(tokens)))
  if side * side != tokens:
    raise CheckpointError(f"{what} has {tokens} patch positions, which is not a square grid; pass grid=(h, w).")
  return side, side


def checkpoint_style(loaded: Mapping[str, Any]) -> str:
  """'clip' (has ln_pre), 'dinov2' (has LayerScale gains) or 'vit', from nested jpeft parameters."""
  if "ln_pre" in loaded:
    return "clip"
  if any("ls1" in block for block in loaded.get("encoder", {}).values()):
    return "dinov2"
  return "vit"


def fit_to_target(loaded: Mapping[str, Any], target: Mapping[str, Any], *, keep_head: bool = False,
                  grid: Optional[tuple[int, int]] = None, source: str = "checkpoint",
                  antialias: bool = False) -> dict[str, Any]:
  """Checks and adapts loaded parameters to a model's parameter shapes; returns the backbone (numpy, nested).

  Args:
    loaded: nested jpeft parameters read from a checkpoint.
    target: the model's parameter tree or its shapes (`jax.eval_shape(model.init, ...)['params']`).
    keep_head: also return the checkpoint's `head` (its shape must then match the model's).
    grid: the model's patch grid (h, w) when it is not square; position embeddings are resampled to it.
    source: the file name for error messages.
    antialias: resample position embeddings with torch's antialiased bicubic (see `resample`).
  Drops `head` (unless keep_head) and, when the model has no `proj`, CLIP's projection (the study's CLIP model
  replaces it with the task head). Raises CheckpointError naming every missing, extra or mis-shaped parameter.
  """
  want = {k: v for k, v in flatten(target).items() if _BACKBONE.fullmatch(k) or (keep_head and k in _HEAD)}
  have = {k: np.asarray(v) for k, v in flatten(loaded).items()}
  if not keep_head:
    have = {k: v for k, v in have.items() if k not in _HEAD}
  if "proj/kernel" not in want:
    have.pop("proj/kernel", None)
  pos, pos_want = have.get("pos_embedding"), want.get("pos_embedding")
  if (pos is not None and pos_want is not None and pos.ndim == 3 and pos.shape[2] == pos_want.shape[2]
      and pos.shape[1] != pos_want.shape[1]):
    new_grid = grid or _square_grid(pos_want.shape[1] - 1, "The model's pos_embedding")
    have["pos_embedding"] = resample_pos_embedding(pos, new_grid, _square_grid(pos.shape[1] - 1, source),
                                                   antialias=antialias)
  problems = []
  for key in sorted(set(want) - set(have)):
    problems.append(f"'{key}' is missing (the model expects shape {tuple(want[key].shape)})")
  for key in sorted(set(have) - set(want)):
    problems.append(f"'{key}' {tuple(have[key].shape)} is not in the model")
  for key in sorted(set(have) & set(want)):
    if tuple(have[key].shape) != tuple(want[key].shape):
      problems.append(f"'{key}' has shape {tuple(have[key].shape)} in the checkpoint but "
                      f"{tuple(want[key].shape)} in the model")
  if problems:
    hint = ("a plain-ViT checkpoint for a CLIP model or the reverse (check model.style)"
            if ("ln_pre/scale" in want) != ("ln_pre/scale" in have) else
            "a checkpoint of another size, patch size or depth (check model.variant)")
    raise CheckpointError(f"{source} does not fit the model: {'; '.join(problems[:6])}"
                          f"{f'; and {len(problems) - 6} more' if len(problems) > 6 else ''}. Is it {hint}?")
  return unflatten({k: v.astype(want[k].dtype) for k, v in have.items()})


def load_pretrained(name_or_path: str, *, target: Mapping[str, Any], style: str = "vit",
                    cache_dir: Optional[str] = None, keep_head: bool = False,
                    grid: Optional[tuple[int, int]] = None) -> dict[str, Any]:
  """Backbone parameters from a checkpoint file or known name, fitted to the model's shapes.

  Args:
    name_or_path: a `.npz` (Google layout), `.safetensors` or `.pth`/`.bin` (timm, Hugging Face CLIP, OpenAI
      CLIP layouts), or a known name ('ViT-B_16', an AugReg stem, 'clip-vit-b16-openai', ...; see `hub`).
    target: the model's parameter shapes, `jax.eval_shape(model.init, rng, images)['params']` (PEFT
      parameters in it are ignored: no checkpoint has them).
    style: the model's style, 'vit', 'clip' or 'dinov2', checked against the checkpoint.
    cache_dir: where known names are downloaded (default ~/.cache/jpeft).
    keep_head, grid: see `fit_to_target`.
  Returns:
    nested dict of float numpy arrays, e.g. embedding/kernel [p, p, 3, D], pos_embedding [1, 1 + h*w, D]
    (resampled bicubically, as timm, when the checkpoint's grid differs), encoder/block_i/attn/qkv/kernel [D, 3D].
    DINOv2's 518px (37 x 37) position embeddings are resampled with antialiasing, as the study's loader (timm's
    `checkpoint_filter_fn` defaults) did; the other styles without, as timm with antialias=False.
  """
  if style not in _STYLES:
    raise CheckpointError(f"Unknown model style '{style}': expected one of {_STYLES}.")
  path = hub.resolve(name_or_path, cache_dir)
  loaded = read_checkpoint(path)
  kind = checkpoint_style(loaded)
  if kind != style:
    what = {"clip": "a CLIP image tower", "dinov2": "a DINOv2 ViT (LayerScale)", "vit": "a plain ViT"}[kind]
    raise CheckpointError(f"'{path}' holds {what}, but the model has style='{style}'; set model.style to "
                          f"'{kind}' (and the matching variant) for it.")
  return fit_to_target(loaded, target, keep_head=keep_head, grid=grid, source=os.path.basename(path),
                       antialias=style == "dinov2")


def merge_into(init_params: Mapping[str, Any], loaded: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """Overlays loaded backbone weights on freshly initialised parameters.

  Returns (params, fresh): params is init_params with every loaded leaf replaced; fresh lists the '/'-joined
  paths that kept their initial values (the head, PEFT parameters), for the training log.
  """
  params, new = flatten(init_params), flatten(loaded)
  for key, value in new.items():
    if key not in params:
      raise CheckpointError(f"merge_into: loaded parameter '{key}' {tuple(np.shape(value))} is not in the model; "
                            "load with target= the same model's parameter shapes.")
    if tuple(np.shape(value)) != tuple(np.shape(params[key])):
      raise CheckpointError(f"merge_into: '{key}' has shape {tuple(np.shape(value))} loaded but "
                            f"{tuple(np.shape(params[key]))} in the model.")
  fresh = sorted(set(params) - set(new))
  params.update(new)
  return unflatten(params), fresh
