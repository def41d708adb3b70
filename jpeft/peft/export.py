"""Saving trained PEFT results: a small adapter file (trainable parameters + method config), and the merged
plain ViT as a full checkpoint.

Adapter file: safetensors, one tensor per trainable flat path ('encoder/block_0/attn/lora_a/kernel', the head
included), and the JSON of `methods_config` in the header metadata under 'jpeft_peft'. It loads onto any copy
of the same backbone: `partition.combine(trainable, frozen_of_the_backbone)`.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from jpeft import outputs
from jpeft.checkpoints import save_npz
from jpeft.peft import base
from jpeft.peft.build import build_methods, methods_config
from jpeft.peft.reparam import merge

_METADATA_KEY = "jpeft_peft"


def save_adapter(path: str, trainable: Mapping[str, Any], methods: Sequence[base.Method],
                 metadata: Optional[Mapping[str, str]] = None, overwrite: bool = False) -> None:
  """Writes the trainable flat dict (from `partition.split`) and the methods' config to `path` atomically;
  `metadata` adds string entries to the file's header (e.g. `jpeft.export`'s provenance). An existing `path`
  is replaced only with `overwrite` (else FileExistsError)."""
  tensors = {k: np.ascontiguousarray(np.asarray(v)) for k, v in trainable.items()}
  with outputs.atomic_path(path, overwrite) as tmp:
    save_file(tensors, tmp, metadata={**(metadata or {}),
                                      _METADATA_KEY: json.dumps(methods_config(tuple(methods)))})


def load_adapter(path: str) -> tuple[dict[str, np.ndarray], tuple[base.Method, ...]]:
  """-> (trainable flat dict, methods rebuilt from the stored config) of a file written by `save_adapter`."""
  try:
    with safe_open(path, framework="np") as f:
      metadata = f.metadata() or {}
      tensors = {k: f.get_tensor(k) for k in f.keys()}
  except (FileNotFoundError, SafetensorError, OSError) as e:
    raise ValueError(f"Cannot read adapter file '{path}' ({type(e).__name__}: {e}): expected a .safetensors "
                     "file written by jpeft.peft.export.save_adapter.") from None
  if _METADATA_KEY not in metadata:
    raise ValueError(f"'{path}' is a safetensors file without a jpeft method config (metadata key "
                     f"'{_METADATA_KEY}'): it was not written by jpeft.peft.export.save_adapter.")
  config = json.loads(metadata[_METADATA_KEY])
  return tensors, build_methods(config["method"], config["peft"])


def save_merged(path: str, params: Mapping, methods: Sequence[base.Method], *, num_heads: int,
                merge_factor=1.0) -> None:
  """Merges the re-parameterisable `methods` into the plain ViT and writes it as a Google-layout `.npz`
  (`jpeft.checkpoints.save_npz`; head included), loadable as a pretrained checkpoint."""
  save_npz(merge(params, methods, merge_factor), path, num_heads=num_heads)
