"""jpeft's adapters in the PyTorch PEFT library's own format (peft 0.22.0), both ways, without torch.

A PEFT adapter directory holds `adapter_config.json` (the library's config class, as `save_pretrained` writes it)
and `adapter_model.safetensors` (the trainable tensors under the library's state-dict keys, the adapter name
dropped). On a timm `VisionTransformer` the keys are

  base_model.model.blocks.<i>.<attn|mlp>.<qkv|proj|fc1|fc2>.<leaf>    one per adapted Linear and tensor
  base_model.model.head.{weight, bias}                                  the trained head (modules_to_save)
  base_model.vera_A, base_model.vera_B                                  VeRA's shared projections

and each jpeft method maps onto the library's class for it (`METHODS`); jpeft's method modules say how their
parameters relate, and `_FIELDS` is that table:

  lora  LoraConfig on qkv with lora_alpha = r (jpeft's LoRA has no alpha / r factor); A, B transposed.
  dora  LoraConfig(use_dora=True); lora_magnitude_vector = ||W|| + jpeft's offset (jpeft stores m - ||W||).
  vera  VeraConfig(save_projection=True): vera_A = jpeft's encoder/vera_a transposed, vera_B likewise, so the
        library uses jpeft's projections. jpeft draws them from jax.random (projection_seed), not from torch's
        generator as the library does (projection_prng_key), so an adapter saved without its projections
        could not be rebuilt on the other side: exports always save them, imports require them. The trained
        weights map exactly either way.
  ia3   IA3Config on qkv and fc2 (feedforward): qkv's ia3_l [3D, 1] is jpeft's key / value scales behind D
        ones (the queries, which jpeft does not scale); fc2's ia3_l [1, H]. On import the library's query
        scales are folded into the key scales (q_i k_i is scaled by l_q,i l_k,i: the same attention logits).
  oft   OFTConfig(r=0, oft_block_size, use_cayley_neumann, num_cayley_neumann_terms): oft_R.weight as is.
  boft  BOFTConfig(boft_block_size, boft_n_butterfly_factor): boft_R as is, boft_s [out, 1] = jpeft's flat [out].
        (The library on a machine without its CUDA block-diagonal extension silently uses one butterfly
        factor: an adapter with more cannot load there.)
  loha  LoHaConfig(r, alpha): hada_* transposed.   lokr  LoKrConfig(r, alpha, decompose_factor): lokr_* transposed.

The config's fields other than these are the library's defaults: `jpeft/assets/peft_adapter_configs.json`, what
peft 0.22.0 itself wrote for each method (made by tests/fixtures/make_peft_format_reference.py).
"""
from __future__ import annotations

import importlib.resources
import json
import math
import re
from typing import Any, Iterator, Mapping

import numpy as np

from jpeft.peft import base
from jpeft.train.errors import RunError

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
SITES = ("qkv", "proj", "fc1", "fc2")
_PARENT = {"qkv": "attn", "proj": "attn", "fc1": "mlp", "fc2": "mlp"}
_SITE_REGEX = {"qkv": r"attn\.qkv", "proj": r"attn\.proj", "fc1": r"mlp\.fc1", "fc2": r"mlp\.fc2"}
# jpeft method -> the library's peft_type
METHODS = {"lora": "LORA", "dora": "LORA", "vera": "VERA", "ia3": "IA3", "oft": "OFT", "boft": "BOFT",
           "loha": "LOHA", "lokr": "LOKR"}
# jpeft method -> {jpeft field: (the library's leaf, layout)}; layouts in `_to_peft_value`.
_FIELDS = {
    "lora": {"a": ("lora_A.weight", "T"), "b": ("lora_B.weight", "T")},
    "dora": {"a": ("lora_A.weight", "T"), "b": ("lora_B.weight", "T"),
             "magnitude": ("lora_magnitude_vector", "magnitude")},
    "vera": {"lambda_d": ("vera_lambda_d", "="), "lambda_b": ("vera_lambda_b", "=")},
    "ia3": {"scale": ("ia3_l", "ia3")},
    "oft": {"r": ("oft_R.weight", "=")},
    "boft": {"r": ("boft_R", "="), "s": ("boft_s", "column")},
    "loha": {f: (f"hada_{f}", "T") for f in ("w1_a", "w1_b", "w2_a", "w2_b")},
    "lokr": {f: (f"lokr_{f}", "T") for f in ("w1", "w2", "w2_a", "w2_b")},
}
_VERA_PROJECTIONS = {"encoder/vera_a": "base_model.vera_A", "encoder/vera_b": "base_model.vera_B"}
_HEAD = {"head/kernel": f"{PREFIX}head.weight", "head/bias": f"{PREFIX}head.bias"}


class PeftFormatError(RunError, ValueError):
  """An adapter (or a run) that the other side cannot express; the message names what and how to fix it."""


def templates() -> dict[str, Any]:
  """{'peft_version': ..., 'configs': {method: adapter_config.json dict}}: the library's saved defaults."""
  text = importlib.resources.files("jpeft.assets").joinpath("peft_adapter_configs.json").read_text()
  return json.loads(text)


def sites(method: base.Method) -> tuple[str, ...]:
  """The block Dense layers `method` adapts, in SITES order."""
  if method.name == "lora":
    return ("qkv",)
  if method.name == "ia3":
    return ("qkv", "fc2")
  return tuple(s for s in SITES if s in method.targets)


def target_regex(names: tuple[str, ...]) -> str:
  """The library's target_modules for `names` as one full-match regex (a bare 'proj' would also match timm's
  patch_embed.proj): 'blocks\\.\\d+\\.attn\\.qkv' or 'blocks\\.\\d+\\.(attn\\.qkv|mlp\\.fc2)'."""
  alternatives = [_SITE_REGEX[s] for s in names]
  return r"blocks\.\d+\." + (alternatives[0] if len(names) == 1 else f"({'|'.join(alternatives)})")


def _jpeft_path(method: str, block: int, site: str, field: str) -> str:
  scope = f"encoder/block_{block}/{_PARENT[site]}"
  if method == "lora":
    return f"{scope}/lora_{field}/kernel"
  if method == "ia3":
    return f"{scope}/ia3_{'kv' if site == 'qkv' else 'ff'}_scale"
  return f"{scope}/{method}_{site}_{field}"


def _column_norm(kernel: np.ndarray) -> np.ndarray:
  """||W|| per output, as jpeft.peft.methods.dora.column_norm (kernel [in, out] -> [out]), in float64."""
  return np.sqrt(np.sum(np.square(kernel.astype(np.float64)), axis=0))


def _entries(method: base.Method, depth: int) -> Iterator[tuple[str, str, str, str]]:
  """(jpeft path, peft key, layout, site kernel path) for every tensor a method has on a `depth`-block ViT."""
  for block in range(depth):
    for site in sites(method):
      for field, (leaf, layout) in _FIELDS[method.name].items():
        yield (_jpeft_path(method.name, block, site, field), f"{PREFIX}blocks.{block}.{_PARENT[site]}.{site}.{leaf}",
               layout, f"encoder/block_{block}/{_PARENT[site]}/{site}/kernel")


def to_peft(method: base.Method, flat: Mapping[str, Any], depth: int) -> dict[str, np.ndarray]:
  """A model's flat parameters -> the library's adapter_model.safetensors tensors (float32, torch layouts).

  Args:
    method: the one jpeft method of the run (a name in METHODS).
    flat: {jpeft path: array}: the trained parameters and head; for DoRA also the frozen kernels (its magnitude
      is stored relative to them), for VeRA the frozen projections encoder/vera_a [in_max, r], vera_b [r, out_max].
    depth: the ViT's number of blocks.
  """
  out = {}
  for path, key, layout, kernel_path in _entries(method, depth):
    if path not in flat:
      if method.name == "lokr":  # W2 is either full or factorised, per site (see LoKr)
        continue
      raise PeftFormatError(f"the run has no parameter {path!r} that its method {method.name!r} should have.")
    value = np.asarray(flat[path], np.float32)
    if layout == "T":
      value = value.T
    elif layout == "column":
      value = value[:, None]
    elif layout == "magnitude":
      value = (value + _column_norm(np.asarray(flat[kernel_path]))).astype(np.float32)
    elif layout == "ia3":
      value = (np.concatenate([np.ones(value.shape[0] // 2, np.float32), value])[:, None] if ".qkv." in key
               else value[None, :])
    out[key] = value
  if method.name == "vera":
    out.update({key: np.asarray(flat[path], np.float32).T for path, key in _VERA_PROJECTIONS.items()})
  out.update({key: np.asarray(flat[path], np.float32).T for path, key in _HEAD.items()})  # head.bias: .T is a no-op
  return out


def adapter_config(method: base.Method, base_model: str) -> dict[str, Any]:
  """The adapter_config.json the library writes for `method` (its template with jpeft's hyperparameters)."""
  config = dict(templates()["configs"][method.name])
  config.update(base_model_name_or_path=base_model, target_modules=target_regex(sites(method)),
                modules_to_save=["head"])
  m = method
  if m.name in ("lora", "dora"):
    config.update(r=m.rank, lora_alpha=m.rank, lora_dropout=m.dropout, use_dora=m.name == "dora")
  elif m.name == "vera":
    config.update(r=m.rank, d_initial=m.d_initial, vera_dropout=m.dropout, projection_prng_key=m.projection_seed,
                  save_projection=True)
  elif m.name == "ia3":
    config.update(feedforward_modules=target_regex(("fc2",)))
  elif m.name == "oft":
    config.update(r=0, oft_block_size=m.block_size, use_cayley_neumann=m.cayley_neumann,
                  num_cayley_neumann_terms=m.neumann_terms)
  elif m.name == "boft":
    config.update(boft_block_size=m.block_size, boft_block_num=0, boft_n_butterfly_factor=m.butterfly_factor)
  elif m.name in ("loha", "lokr"):
    config.update(r=m.rank, alpha=m.alpha)
    if m.name == "lokr":
      config.update(decompose_factor=m.decompose_factor)
  return config


def check_exportable(methods: tuple[base.Method, ...], merge_factor: float) -> base.Method:
  """The one method of a run that the format can carry; raises PeftFormatError otherwise."""
  names = "+".join(m.name for m in methods) or "linear"
  if len(methods) != 1 or methods[0].name not in METHODS:
    raise PeftFormatError(
        f"method {names!r} has no class in the PyTorch PEFT library: --format=peft writes one of "
        f"{sorted(METHODS)}. A re-parameterisable method can go as a LoRA (--format=lora --rank=full), any "
        "method as a jpeft adapter (--format=adapter).")
  if merge_factor != 1.0:
    raise PeftFormatError(f"the run has merge_factor={merge_factor}, which the PyTorch PEFT library cannot "
                          "express; export a run at merge_factor 1 (or use --format=timm, which merges at it).")
  return methods[0]


# --- import -----------------------------------------------------------------------------------------------------
_KEY = re.compile(r"base_model\.model\.blocks\.(\d+)\.(attn|mlp)\.(qkv|proj|fc1|fc2)\.(.+)")
# Fields that must keep the library's default for jpeft to compute the same function (value, what to say).
_REQUIRED_DEFAULTS = {"bias": "none", "fan_in_fan_out": False, "layers_to_transform": None, "rank_pattern": {},
                      "alpha_pattern": {}, "lora_bias": False, "coft": False, "block_share": False,
                      "decompose_both": False, "use_effective_conv2d": False, "layer_replication": None,
                      "boft_block_num": 0}


def method_of(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], where: str
              ) -> tuple[str, dict[str, Any]]:
  """(jpeft method, its hyperparameters) of a library adapter; raises PeftFormatError naming what jpeft lacks.

  `where` names the adapter in messages (its directory)."""
  peft_type = config.get("peft_type")
  if peft_type not in set(METHODS.values()):
    raise PeftFormatError(f"{where} is a {peft_type} adapter; jpeft imports {sorted(set(METHODS.values()))} "
                          f"(as jpeft's {sorted(METHODS)}).")
  for field, default in _REQUIRED_DEFAULTS.items():
    if field in config and config[field] not in (default, None if default == {} else default):
      raise PeftFormatError(f"{where} sets {field}={config[field]!r}, which jpeft's methods do not have "
                            f"(they compute the library's default, {field}={default!r}).")
  found = sorted({(m.group(3)) for m in map(_KEY.fullmatch, tensors) if m}, key=SITES.index)
  name = {"LORA": "dora" if config.get("use_dora") else "lora"}.get(peft_type, peft_type.lower())
  hparams: dict[str, Any] = {}
  if name in ("lora", "dora"):
    hparams = dict(rank=int(config["r"]), dropout=float(config.get("lora_dropout", 0.0)))
    if name == "lora" and found != ["qkv"]:
      raise PeftFormatError(f"{where} is a LoRA on {found}; jpeft's LoRA adapts the fused qkv only (the study's): "
                            "import a LoRA of blocks.*.attn.qkv, or train it as DoRA.")
  elif name == "vera":
    if not config.get("save_projection", True) or "base_model.vera_A" not in tensors:
      raise PeftFormatError(f"{where} was saved without VeRA's projections (save_projection=False); jpeft draws "
                            "them with another generator, so save the adapter with save_projection=True.")
    hparams = dict(rank=int(config["r"]), d_initial=float(config.get("d_initial", 0.1)),
                   dropout=float(config.get("vera_dropout", 0.0)),
                   projection_seed=int(config.get("projection_prng_key", 0)))
  elif name == "ia3":
    if found != ["qkv", "fc2"]:
      raise PeftFormatError(f"{where} is an (IA)^3 of {found}; jpeft's scales keys and values (qkv, as the "
                            "library's fused qkv) and fc2's input: target blocks.*.attn.qkv and blocks.*.mlp.fc2 "
                            "with feedforward_modules blocks.*.mlp.fc2.")
  elif name == "oft":
    r_shape = next(v.shape for k, v in tensors.items() if k.endswith("oft_R.weight"))
    block = int(round((1 + math.sqrt(1 + 8 * r_shape[1])) / 2))  # b (b - 1) / 2 packed entries
    hparams = dict(block_size=block, cayley_neumann=bool(config.get("use_cayley_neumann", True)),
                   neumann_terms=int(config.get("num_cayley_neumann_terms", 5)))
  elif name == "boft":
    r_shape = next(v.shape for k, v in tensors.items() if k.endswith("boft_R"))
    hparams = dict(block_size=int(r_shape[-1]), butterfly_factor=int(r_shape[0]))  # the tensors are the truth
  else:
    hparams = dict(rank=int(config["r"]), alpha=float(config["alpha"]))
    if name == "lokr":
      hparams["decompose_factor"] = int(config.get("decompose_factor", -1))
  if name not in ("lora", "ia3"):
    hparams["targets"] = tuple(found)
  return name, hparams


def from_peft(method: base.Method, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
              frozen: Mapping[str, Any], depth: int) -> dict[str, np.ndarray]:
  """The library's adapter tensors -> jpeft's flat parameters (trained ones, the head, VeRA's projections).

  `frozen` holds the backbone's flat kernels (DoRA's magnitude becomes an offset from their norms). LoRA's and
  DoRA's scaling lora_alpha / r (or / sqrt(r) with use_rslora) is folded into B. Raises PeftFormatError naming a
  tensor the method should have and the adapter lacks, or one it has and jpeft has no place for."""
  left = dict(tensors)
  out = {}
  scale = 1.0
  if method.name in ("lora", "dora"):
    r = float(config["r"])
    scale = float(config.get("lora_alpha", r)) / (math.sqrt(r) if config.get("use_rslora") else r)
  for path, key, layout, kernel_path in _entries(method, depth):
    if key not in left:
      if method.name == "lokr":
        continue
      raise PeftFormatError(f"the adapter has no tensor {key!r}, which jpeft's {method.name} on this "
                            f"{depth}-block ViT needs: was it trained on another base model?")
    value = np.asarray(left.pop(key), np.float32)
    if layout == "magnitude" and value.shape != (np.shape(frozen[kernel_path])[1],):  # the kernel's outputs
      want = (np.shape(frozen[kernel_path])[1],)
      raise PeftFormatError(f"the adapter's {key!r} is {value.shape}, where this {depth}-block ViT's "
                            f"{kernel_path!r} needs {want}: it was trained on a base model of other sizes.")
    if layout == "T":
      value = value.T
      if key.endswith("lora_B.weight"):
        value = value * np.float32(scale)
    elif layout == "column":
      value = value[:, 0]
    elif layout == "magnitude":
      value = (value - _column_norm(np.asarray(frozen[kernel_path]))).astype(np.float32)
    elif layout == "ia3":
      if ".qkv." in key:
        if value.ndim != 2 or value.shape[0] % 3:
          raise PeftFormatError(f"the adapter's {key!r} is {value.shape}, not the [3 D, 1] of a fused qkv.")
        q, k, v = np.split(value[:, 0], 3)
        value = np.concatenate([q * k, v])  # the query scales folded into the key scales (module doc)
      else:
        value = value[0]
    out[path] = value
  if method.name == "vera":
    out.update({path: np.asarray(left.pop(key), np.float32).T for path, key in _VERA_PROJECTIONS.items()})
  out.update({path: np.asarray(left.pop(key), np.float32).T for path, key in _HEAD.items() if key in left})
  if left:
    raise PeftFormatError(f"the adapter has tensors jpeft's {method.name} has no place for: {sorted(left)[:4]}"
                          f"{' ...' if len(left) > 4 else ''} (another base model, or layers jpeft does not adapt).")
  return out
