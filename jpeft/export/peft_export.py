"""A finished run as a PyTorch PEFT adapter directory (`python -m jpeft.export --format=peft`, or `--format=lora`
for any re-parameterisable method via `jpeft.export.to_lora`), and such a directory read back (`read_adapter`,
for `init_from.peft`).

The directory holds what the library's `save_pretrained` writes (`adapter_config.json`,
`adapter_model.safetensors`; mapping in `jpeft.export.peft_format`) and, unless `with_base=False`,
`base_model.safetensors`: the run's backbone (with its trained head) as a timm state dict, so that the printed
lines rebuild the model offline. The library's loader ignores the extra file.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Optional

import numpy as np
from safetensors import safe_open

import jax

from jpeft import outputs, peft
from jpeft.checkpoints import statedict
from jpeft.data import tasks
from jpeft.export import peft_format, to_lora
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import model_setup, reuse

BASE_NAME = "base_model.safetensors"


def output_dir(out: Optional[str], workdir: str, format: str, overwrite: bool = False) -> str:  # pylint: disable=redefined-builtin
  """The directory an export in `format` ('peft' | 'lora') writes: `out`, or `<workdir>/export/<format>`; checked
  with `outputs.check_dir` (an existing non-empty one needs `overwrite`, a run's records never); creates nothing."""
  directory = out or os.path.join(workdir, "export", format)
  return outputs.check_dir(directory, overwrite, "--out" if out else "the default --out", workdirs=(workdir,))


def export_peft(saved: reuse.SavedRun, out: str, run_metadata: dict[str, str], with_base: bool = True,
                overwrite: bool = False) -> list[str]:
  """Writes the run `saved` as a PEFT adapter directory `out` (checked by `output_dir`); returns the paths.

  Raises PeftFormatError (a method the library lacks, merge_factor != 1), OutputError (`out` holds files and
  not `overwrite`), ConfigError (the pretrained file changed since the run), CheckpointError (the backbone
  cannot be read)."""
  from jpeft import export  # pylint: disable=import-outside-toplevel  (the package imports this module)
  config = saved.config
  method = peft_format.check_exportable(peft.build_methods(config.method, config.peft), config.merge_factor)
  model_setup.check_pretrained(config, saved.meta, saved.workdir)
  setup = model_setup.build(config)  # the frozen backbone: DoRA's norms, VeRA's projections, the base file
  params = partition.combine(saved.trainable, setup.frozen)
  flat = {k: np.asarray(v) for k, v in partition.flatten(params).items()}
  if "proj/kernel" in flat:  # CLIP: timm's classifier is one Linear, head(proj(x)) = x @ (P @ W) + b
    flat["head/kernel"] = flat["proj/kernel"] @ flat["head/kernel"]
  depth = sum(1 for k in flat if k.endswith("/attn/qkv/kernel"))
  name, kwargs = export.timm_architecture(config.model.variant, config.model.style, config.data.image_size,
                                          tasks.get_task(config.task).num_classes)
  tensors = peft_format.to_peft(method, flat, depth)
  adapter_config = peft_format.adapter_config(method, base_model=name)
  base = export.timm_state_dict(params, (method,), merge_factor=0.0) if with_base else None  # methods left out
  return _write(out, adapter_config, tensors, base, export.timm_metadata(name, kwargs), run_metadata, overwrite)


def export_lora(saved: reuse.SavedRun, out: str, run_metadata: dict[str, str], rank: str = "full",
                with_base: bool = True, overwrite: bool = False) -> tuple[list[str], dict[str, Any]]:
  """Writes the run `saved` (any re-parameterisable methods) as a rank-`rank` LoRA directory (`to_lora`).

  Returns (paths, report): report has 'rank', 'relative_error' {timm Linear: ||Delta - B A|| / ||Delta||} and,
  for the 'vit' style, 'max_logit_change' / 'max_logit' over 8 random images in the model's input range."""
  from jpeft import export  # pylint: disable=import-outside-toplevel
  config = saved.config
  r = to_lora.parse_rank(rank)
  methods = peft.build_methods(config.method, config.peft)
  if not all(m.mergeable for m in methods):
    export.timm_state_dict({}, methods)  # raises the ExportError naming the formats that work
  model_setup.check_pretrained(config, saved.meta, saved.workdir)
  setup = model_setup.build(config)
  merged = export.timm_state_dict(partition.combine(saved.trainable, setup.frozen), methods, config.merge_factor)
  # At initialisation every method is the identity: this is the backbone (and the initial head).
  initial = export.timm_state_dict(partition.combine(setup.trainable, setup.frozen), methods, config.merge_factor)
  tensors, fields, errors = to_lora.lora_from_delta(merged, initial, r)
  name, kwargs = export.timm_architecture(config.model.variant, config.model.style, config.data.image_size,
                                          tasks.get_task(config.task).num_classes)
  adapter_config = {**peft_format.templates()["configs"]["lora"], **fields, "base_model_name_or_path": name}
  report: dict[str, Any] = dict(rank=fields["r"], relative_error=errors)
  if config.model.style == "vit":
    model = vit.create_model(config.model.variant, num_classes=tasks.get_task(config.task).num_classes)
    images = np.random.default_rng(0).uniform(-1, 1, (8, config.data.image_size, config.data.image_size, 3))
    logits = [np.asarray(jax.jit(model.apply)({"params": statedict.from_state_dict(sd)}, images.astype(np.float32)))
              for sd in (merged, to_lora.approximated(initial, tensors))]
    report.update(max_logit_change=float(np.abs(logits[1] - logits[0]).max()),
                  max_logit=float(np.abs(logits[0]).max()))
  paths = _write(out, adapter_config, tensors, initial if with_base else None, export.timm_metadata(name, kwargs),
                 run_metadata, overwrite)
  return paths, report


def _write(out: str, adapter_config: dict, tensors: dict, base: Optional[dict], timm_metadata: dict,
           run_metadata: dict, overwrite: bool = False) -> list[str]:
  """Writes the directory `out` whole (a temporary directory renamed into place); returns its files. Into an
  existing directory (`overwrite`, granted by `output_dir`) each file is replaced in turn, and nothing else in it
  is touched."""
  from jpeft import export  # pylint: disable=import-outside-toplevel
  tmp = f"{out}.tmp{os.getpid()}"
  os.makedirs(tmp)
  try:
    with open(os.path.join(tmp, peft_format.CONFIG_NAME), "w") as f:
      json.dump(adapter_config, f, indent=2, sort_keys=True)
      f.write("\n")
    export.save_safetensors(os.path.join(tmp, peft_format.WEIGHTS_NAME), tensors, {**timm_metadata, **run_metadata})
    names = [peft_format.CONFIG_NAME, peft_format.WEIGHTS_NAME]
    if base is not None:
      export.save_safetensors(os.path.join(tmp, BASE_NAME), base, {**timm_metadata, **run_metadata})
      names.append(BASE_NAME)
    if os.path.isdir(out) and os.listdir(out):
      outputs.check_dir(out, overwrite)  # it appeared since output_dir checked, without overwrite: refused
      for name in names:
        os.replace(os.path.join(tmp, name), outputs.check_file(os.path.join(out, name), overwrite=True))
    else:
      os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
      os.rename(tmp, out)  # onto nothing or an empty directory
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return [os.path.join(out, n) for n in names]


def usage(directory: str) -> str:
  """The Python lines that load an exported directory with timm and the PEFT library."""
  from jpeft import export  # pylint: disable=import-outside-toplevel
  base = os.path.join(directory, BASE_NAME)
  with safe_open(os.path.join(directory, peft_format.WEIGHTS_NAME), framework="np") as f:
    metadata = f.metadata()  # the timm model and the run, as _write put them
  spec = json.loads(metadata[export.TIMM_METADATA_KEY])
  if os.path.exists(base):
    load = f"base.load_state_dict(safetensors.torch.load_file({base!r}))"
  else:
    pretrained = json.loads(metadata[export.RUN_METADATA_KEY])["pretrained"]
    load = f"base.load_state_dict(...)  # the run's backbone, {pretrained!r}, in timm's layout"
  args = "".join(f", {k}={v!r}" for k, v in spec["kwargs"].items())
  return ("import safetensors.torch, timm\nfrom peft import PeftModel\n"
          f"base = timm.create_model({spec['model']!r}, pretrained=False{args})\n{load}\n"
          f"model = PeftModel.from_pretrained(base, {directory!r}).eval()")


def read_config(directory: str) -> dict[str, Any]:
  with open(os.path.join(directory, peft_format.CONFIG_NAME)) as f:
    return json.load(f)


def read_adapter(directory: str, what: str = "--config.init_from.peft") -> tuple[dict, dict[str, np.ndarray]]:
  """(adapter_config.json, adapter_model.safetensors tensors) of a PEFT adapter directory.

  Raises PeftFormatError naming the directory when either file is missing or unreadable."""
  try:
    config = read_config(directory)
    with safe_open(os.path.join(directory, peft_format.WEIGHTS_NAME), framework="np") as f:
      tensors = {k: f.get_tensor(k) for k in f.keys()}
  except (OSError, ValueError) as e:  # missing file, bad JSON, not safetensors
    raise peft_format.PeftFormatError(
        f"{what}={directory!r} is not a PEFT adapter directory ({peft_format.CONFIG_NAME} + "
        f"{peft_format.WEIGHTS_NAME}, as the library's save_pretrained writes): {e}") from None
  return config, tensors
