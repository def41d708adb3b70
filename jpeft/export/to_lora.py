"""Any re-parameterisable run as a LoRA in the PyTorch PEFT library's format (`jpeft.export --format=lora`).

The run's methods are merged into the backbone (`jpeft.export.timm_state_dict`, timm's layout) and compared with
the same model merged at initialisation, where every method is the identity, so the difference is what training
changed. Each block Linear's weight change Delta [out, in] becomes a LoRA by truncated SVD,

  Delta ~ B A,   A = sqrt(S_R) V_R^T [R, in] (lora_A.weight),   B = U_R sqrt(S_R) [out, R] (lora_B.weight),

with lora_alpha = r (scaling 1). Rank 'full' is the layers' smallest side (the ViT's width), where the SVD is
exact. A change of a Linear's bias goes into lora_B.bias (`lora_bias=True`); a changed LayerNorm, the patch
embedding and the head are saved whole (modules_to_save). A change the library has no place for (the position
embedding, the class token: parameters outside any module) is refused, naming it.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import numpy as np

from jpeft.export import peft_format

_LINEAR = re.compile(r"blocks\.(\d+)\.(attn|mlp)\.(qkv|proj|fc1|fc2)\.(weight|bias)")
_MODULES = re.compile(r"(blocks\.\d+\.norm[12]|norm|fc_norm|norm_pre|patch_embed\.proj|head)\.(weight|bias)")


def parse_rank(rank: str) -> Optional[int]:
  """'full' -> None (each layer's full rank); 'R' -> R >= 1; else PeftFormatError."""
  if rank == "full":
    return None
  if not rank.isdigit() or int(rank) < 1:
    raise peft_format.PeftFormatError(f"--rank={rank!r} is not a rank: pass a positive integer or 'full'.")
  return int(rank)


def lora_from_delta(merged: Mapping[str, np.ndarray], initial: Mapping[str, np.ndarray], rank: Optional[int]
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
  """Two timm state dicts of the merged model (trained, initial) -> (adapter tensors, config fields, errors).

  Returns the library's adapter tensors, the LoraConfig fields that differ from its template (r, lora_alpha,
  target_modules, lora_bias, modules_to_save) and each Linear's relative error ||Delta - B A|| / ||Delta||
  (Frobenius; 0 for an unchanged layer). Raises PeftFormatError naming a change LoRA cannot carry."""
  changed = {k for k in merged if not np.array_equal(merged[k], initial[k])}
  linear = {k for k in changed if _LINEAR.fullmatch(k)}
  modules = sorted({m.group(1) for m in map(_MODULES.fullmatch, changed - linear) if m} | {"head"})
  loose = sorted(k for k in changed - linear if not _MODULES.fullmatch(k))
  if loose:
    raise peft_format.PeftFormatError(
        f"the run changes {loose[:4]}, which the PyTorch PEFT library cannot save beside a LoRA (a parameter "
        "outside any module); export it with --format=timm (merged) or --format=adapter.")
  sites = [s for s in peft_format.SITES if any(_LINEAR.fullmatch(k).group(3) == s for k in linear)]
  if not sites:
    raise peft_format.PeftFormatError("the run changes no block Linear layer: nothing for a LoRA to carry; "
                                      "export it with --format=timm or --format=adapter.")
  with_bias = any(k.endswith(".bias") for k in linear)
  depth = 1 + max(int(m.group(1)) for m in map(_LINEAR.fullmatch, merged) if m)
  width = min(min(merged[f"blocks.0.{'attn' if s in ('qkv', 'proj') else 'mlp'}.{s}.weight"].shape)
              for s in sites)
  r = width if rank is None else rank
  if r > width:
    raise peft_format.PeftFormatError(f"--rank={r} is above the layers' full rank {width}: pass at most {width} "
                                      "or 'full'.")
  tensors, errors = {}, {}
  for block in range(depth):
    for site in sites:
      module = f"blocks.{block}.{'attn' if site in ('qkv', 'proj') else 'mlp'}.{site}"
      delta = merged[f"{module}.weight"].astype(np.float64) - initial[f"{module}.weight"]
      u, s, vt = np.linalg.svd(delta, full_matrices=False)
      root = np.sqrt(s[:r])
      a, b = root[:, None] * vt[:r], u[:, :r] * root
      norm = np.linalg.norm(delta)
      errors[module] = float(np.linalg.norm(delta - b @ a) / norm) if norm else 0.0
      key = f"{peft_format.PREFIX}{module}"
      tensors[f"{key}.lora_A.weight"] = a.astype(np.float32)
      tensors[f"{key}.lora_B.weight"] = b.astype(np.float32)
      if with_bias:
        tensors[f"{key}.lora_B.bias"] = (merged[f"{module}.bias"].astype(np.float64)
                                         - initial[f"{module}.bias"]).astype(np.float32)
  for module in modules:
    for leaf in ("weight", "bias"):
      if f"{module}.{leaf}" in merged:
        tensors[f"{peft_format.PREFIX}{module}.{leaf}"] = np.asarray(merged[f"{module}.{leaf}"], np.float32)
  fields = dict(r=r, lora_alpha=r, lora_dropout=0.0, target_modules=peft_format.target_regex(tuple(sites)),
                lora_bias=with_bias, use_dora=False, modules_to_save=modules)
  return tensors, fields, errors


def approximated(initial: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The timm state dict the library's merge_and_unload gives: `initial` + B A (+ lora_B.bias), saved modules."""
  out = dict(initial)
  for key, value in tensors.items():
    name = key[len(peft_format.PREFIX):]
    if name.endswith(".lora_A.weight"):
      module = name[:-len(".lora_A.weight")]
      b = tensors[f"{peft_format.PREFIX}{module}.lora_B.weight"]
      out[f"{module}.weight"] = initial[f"{module}.weight"] + b @ value
      if f"{peft_format.PREFIX}{module}.lora_B.bias" in tensors:
        out[f"{module}.bias"] = initial[f"{module}.bias"] + tensors[f"{peft_format.PREFIX}{module}.lora_B.bias"]
    elif ".lora_" not in name:
      out[name] = value
  return out
