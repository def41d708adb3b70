"""CLIP text towers (and the logit scale and visual projection beside them) from whole-CLIP state dicts.

The rule tables (`statedict.OPENAI_TEXT`, `statedict.HF_TEXT`) sit beside the image towers' and share their
block rules; kernels are transposed from torch's [out, in] to Flax's [in, out]. Layouts, recognised by their keys:
  OpenAI CLIP (`clip.load`), and    token_embedding.weight, positional_embedding, transformer.resblocks.{i}.{ln_1,
  open_clip `CLIP`                  attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final,
                                    text_projection [D, E]; beside visual.* (visual.proj [D_img, E]), logit_scale
  open_clip `CustomTextCLIP`        the same text keys under `text.`
  Hugging Face `CLIPModel`          text_model.embeddings.{token_embedding, position_embedding},
                                    text_model.encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj,
                                    layer_norm2, mlp.fc1, mlp.fc2}, text_model.final_layer_norm,
                                    text_projection.weight [E, D]; beside vision_model.*, visual_projection.weight
Every other key (the image tower, OpenAI's scalar entries context_length / vocab_size / input_resolution) is
not the text tower's and is left alone. The jpeft tree is that of `jpeft.models.clip_text.TextTransformer`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional

import numpy as np

from jpeft.checkpoints import api, hub, statedict
from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.tree import unflatten

# layout -> (the keys that are the text tower's, prefix stripped before the rules, rules, visual projection key)
_LAYOUTS = {
    "OpenAI CLIP": (r"(token_embedding|positional_embedding|transformer|ln_final|text_projection)\b.*", "",
                    statedict.OPENAI_TEXT, "visual.proj"),
    "open_clip CustomTextCLIP": (r"text\..*", "text.", statedict.OPENAI_TEXT, "visual.proj"),
    # (older Hugging Face files also hold the position_ids buffer, 0..T-1, which carries no weights)
    "Hugging Face CLIP": (r"(?!text_model\.embeddings\.position_ids)(text_model\..*|text_projection\..*)", "",
                          statedict.HF_TEXT, "visual_projection.weight"),
}
_REQUIRED = ("token_embedding/embedding", "pos_embedding", "norm/scale", "proj/kernel",
             "encoder/block_0/attn/qkv/kernel")
_TEXT_ONLY = ("the jpeft CLIP text tower (token + position embedding, pre-LN causal blocks, final LN, bias-free "
              "projection at EOT); other text towers (Hugging Face BERT/XLM-R towers of open_clip, projection "
              "biases, LayerScale) are not supported.")


@dataclasses.dataclass(frozen=True)
class ClipText:
  """What a zero-shot head needs from a CLIP checkpoint.

  Attributes:
    params: nested text-tower parameters (numpy float32), e.g. token_embedding/embedding [V, D],
      pos_embedding [T, D], encoder/block_i/attn/qkv/kernel [D, 3D], norm/{scale, bias} [D], proj/kernel [D, E].
    logit_scale: exp of the stored (log) temperature, e.g. 100.0 for OpenAI's CLIP.
    visual_proj: the image tower's bias-free projection [D_img, E] (jpeft's `proj/kernel`), or None.
    layout: which layout the file had.
  """
  params: dict[str, Any]
  logit_scale: float
  visual_proj: Optional[np.ndarray]
  layout: str


def detect_text_layout(state) -> str:
  """'OpenAI CLIP', 'open_clip CustomTextCLIP' or 'Hugging Face CLIP' from a state dict's keys; '' if none."""
  if "text_model.embeddings.token_embedding.weight" in state:
    return "Hugging Face CLIP"
  if "text.token_embedding.weight" in state:
    return "open_clip CustomTextCLIP"
  if "token_embedding.weight" in state:
    return "OpenAI CLIP"
  return ""


def text_from_state_dict(state, source: str = "checkpoint") -> ClipText:
  """A whole-CLIP state dict of numpy arrays -> ClipText (raises CheckpointError if it has no text tower)."""
  for wrapper in ("model", "state_dict"):
    if isinstance(state.get(wrapper), dict):
      state = state[wrapper]
  state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
  layout = detect_text_layout(state)
  if not layout:
    raise CheckpointError(f"{source} holds no CLIP text tower (no 'token_embedding.weight', "
                          "'text.token_embedding.weight' or 'text_model.embeddings.token_embedding.weight'; its "
                          f"first keys are {sorted(state)[:5]}). A zero-shot head needs a whole CLIP checkpoint, "
                          "e.g. 'openai/clip-vit-base-patch16' or OpenAI's ViT-B-16.pt, not an image tower alone "
                          "(config.zeroshot.checkpoint / --checkpoint of python -m jpeft.zeroshot).")
  keys, prefix, rules, proj_key = _LAYOUTS[layout]
  text = {k[len(prefix):]: v for k, v in state.items() if re.fullmatch(keys, k)}
  flat = statedict.rename(text, rules, source, f"{layout} text tower", _TEXT_ONLY)
  if layout == "Hugging Face CLIP":
    flat = statedict.fuse_hf_qkv(flat, source)
  missing = [k for k in _REQUIRED if k not in flat]
  if missing:
    raise CheckpointError(f"{source}: its {layout} text tower lacks {missing}; the file is truncated or holds only "
                          "a stand-in text tower. Pass a whole CLIP checkpoint.")
  if "logit_scale" not in state:
    raise CheckpointError(f"{source} has a text tower but no 'logit_scale'; pass the whole CLIP checkpoint it "
                          "came from (the zero-shot head multiplies cosine similarities by exp(logit_scale)).")
  flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}  # float16 / bfloat16 files compute in float32
  proj = state.get(proj_key)
  if proj is not None:
    proj = np.asarray(proj, np.float32)
    proj = proj.T.copy() if proj_key.endswith(".weight") else proj
  return ClipText(unflatten(flat), float(np.exp(np.asarray(state["logit_scale"], np.float64))), proj, layout)


def read_clip_text(name_or_path: str, cache_dir: Optional[str] = None) -> ClipText:
  """The text tower of a CLIP checkpoint file or known name ('openai/clip-vit-base-patch16'; see `hub`)."""
  path = hub.resolve(name_or_path, cache_dir)
  fmt = api.detect_format(path)
  if fmt == "npz":
    raise CheckpointError(f"'{path}' is a Google ViT .npz, which has no CLIP text tower; pass a whole CLIP "
                          "checkpoint (.safetensors / .pth / .bin in the OpenAI, open_clip or Hugging Face layout).")
  state = statedict.read_safetensors(path) if fmt == "safetensors" else statedict.read_torch(path)
  return text_from_state_dict(state, source=os.path.basename(path))
