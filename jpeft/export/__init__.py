"""A finished run's trained model as files other tools load: a merged plain ViT in timm's layout, or the adapter.

  paths = export_run('runs/dtd_lora', out='runs/dtd_lora/export', format='timm')   # or format='adapter'

Formats:
  timm     the PEFT methods merged into the backbone (`jpeft.peft.merge`, at the run's merge_factor) and written
           as a timm `VisionTransformer` state dict in safetensors (float32). A PyTorch user loads it with
             model = timm.create_model(<name>, pretrained=False, **<kwargs>)
             model.load_state_dict(safetensors.torch.load_file(<path>))
           where <name> and <kwargs> are in the file's metadata (key 'jpeft_timm', JSON {model, kwargs}) and are
           printed by the CLI. Only re-parameterisable methods (LoRA, BitFit, SSF, RepAdapter, ...) merge; a
           method that adds tokens or non-linear modules (VPT, adapters, ...) can be exported as 'adapter' only.
           CLIP's bias-free projection is folded into the head (timm's CLIP classifier has none).
  adapter  the trainable parameters (PEFT + head) and the methods' config (`jpeft.peft.export.save_adapter`):
           loads onto the same backbone with `load_adapter`; the backbone pointer is in the metadata.
  peft     a directory in the PyTorch PEFT library's format (adapter_config.json + adapter_model.safetensors,
           the head as modules_to_save) for lora, dora, vera, ia3, oft, boft, loha and lokr, plus the backbone
           as base_model.safetensors (`jpeft.export.peft_export`; mapping in `jpeft.export.peft_format`).
  lora     any re-parameterisable run's weight change as a rank-R LoRA in that format, by truncated SVD
           (`export_lora_run`, `jpeft.export.to_lora`); rank 'full' is exact.
Both files carry the run's provenance and input preprocessing under the metadata key 'jpeft_run' (JSON:
workdir, step, planned_step, finished, task, method, pretrained, image_size, normalization and its mean / std).

Only a finished run is exported unless `allow_unfinished` (then `step` < `planned_step` and `finished` is false in
the metadata); `jpeft.train.reuse.load_run` decides. The output never replaces an existing file unless
`overwrite`, and never a run's own records (`jpeft.outputs.check_file`); it is written atomically.

The timm key layout is `jpeft.checkpoints.statedict`'s reading table inverted (`to_timm`), so import and export
share one definition.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from safetensors.numpy import save_file

from jpeft import outputs, peft
from jpeft.checkpoints import statedict
from jpeft.data import preprocess, tasks
from jpeft.models import vit
from jpeft.peft import base, partition
from jpeft.peft.export import save_adapter
from jpeft.train import model_setup, reuse
from jpeft.train.errors import RunError

FORMATS = ("timm", "adapter", "peft", "lora")
FILE_FORMATS = ("timm", "adapter")  # one .safetensors file; the others write a directory
TIMM_METADATA_KEY = "jpeft_timm"
RUN_METADATA_KEY = outputs.EXPORT_METADATA_KEY
# jpeft model style -> (timm model with the same layers, its jpeft variant and image size): other sizes are that
# model with the differing architecture arguments (`timm_architecture`).
_TIMM_MODELS = {"vit": ("vit_base_patch16_224", "B/16", 224),
                "clip": ("vit_base_patch16_clip_quickgelu_224", "B/16", 224),
                "dinov2": ("vit_base_patch14_dinov2", "B/14", 518)}


class ExportError(RunError, ValueError):
  """The run cannot be written in the asked format (the message says which formats work)."""


def timm_architecture(variant: str, style: str, image_size: int, num_classes: int) -> tuple[str, dict]:
  """The timm model name and `create_model` kwargs building the same ViT: ('vit_base_patch16_224',
  {'num_classes': 47}) for the study's B/16 at 224px; tiny variants add embed_dim, depth, ... ."""
  name, base_variant, base_size = _TIMM_MODELS[style]
  want, have = vit.decode_variant(variant), vit.decode_variant(base_variant)
  kwargs: dict[str, Any] = dict(num_classes=num_classes)
  for timm_key, ours in (("patch_size", "patch_size"), ("embed_dim", "width"), ("depth", "depth"),
                         ("num_heads", "num_heads")):
    if want[ours] != have[ours]:
      kwargs[timm_key] = want[ours]
  ratio = want["mlp_dim"] / want["width"]
  if int(want["width"] * ratio) != want["mlp_dim"]:  # timm sizes the MLP as int(embed_dim * mlp_ratio)
    raise ExportError(f"model.variant '{variant}' has an MLP width {want['mlp_dim']} that timm's mlp_ratio "
                      "cannot express; export it with --format=adapter.")
  if ratio != have["mlp_dim"] / have["width"]:
    kwargs["mlp_ratio"] = ratio
  if image_size != base_size:
    kwargs["img_size"] = image_size
  return name, kwargs


def timm_state_dict(params: Mapping, methods: Sequence[base.Method], merge_factor: float = 1.0
                    ) -> dict[str, np.ndarray]:
  """Nested params of a model with `methods` -> the timm state dict of the merged plain ViT (float32 numpy).

  Raises ExportError if a method is not re-parameterisable."""
  try:
    merged = partition.flatten(peft.merge(params, methods, merge_factor))
  except ValueError as e:
    raise ExportError(f"--format=timm writes a plain ViT, and this run's method cannot become one: {e} Export "
                      "it with --format=adapter (its trainable parameters, loaded onto the same backbone with "
                      "jpeft.peft.export.load_adapter).") from None
  merged = {k: np.asarray(v, np.float32) for k, v in merged.items()}
  if "proj/kernel" in merged:  # CLIP: head(proj(x)) = x @ (P @ W) + b, one Linear as in timm's classifier
    merged["head/kernel"] = merged.pop("proj/kernel") @ merged["head/kernel"]
  return statedict.to_timm(merged)


def save_safetensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str],
                     overwrite: bool = False) -> None:
  """Writes `tensors` (contiguous copies) with string `metadata` to `path` atomically; an existing `path` is
  replaced only with `overwrite` (else FileExistsError)."""
  with outputs.atomic_path(path, overwrite) as tmp:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=dict(metadata))


def timm_metadata(name: str, kwargs: Mapping[str, Any]) -> dict[str, str]:
  # 'format': 'pt' is what safetensors.torch writes; some PyTorch loaders look for it.
  return {"format": "pt", TIMM_METADATA_KEY: json.dumps(dict(model=name, kwargs=dict(kwargs)))}


def timm_usage(path: str, metadata: Mapping[str, str]) -> str:
  """The two lines a PyTorch user runs to load a timm export (from its metadata)."""
  spec = json.loads(metadata[TIMM_METADATA_KEY])
  args = "".join(f", {k}={v!r}" for k, v in spec["kwargs"].items())
  return (f"model = timm.create_model({spec['model']!r}, pretrained=False{args})\n"
          f"model.load_state_dict(safetensors.torch.load_file({path!r}))")


def _run_metadata(saved: reuse.SavedRun) -> dict[str, Any]:
  config = saved.config
  stats = preprocess.NORMALIZATIONS.get(config.data.normalization)
  return dict(workdir=saved.workdir, **saved.completion.record(), task=config.task, method=config.method,
              pretrained=model_setup.pretrained_name(config), image_size=config.data.image_size,
              normalization=config.data.normalization, mean=stats[0] if stats else None,
              std=stats[1] if stats else None)


# pylint: disable-next=redefined-builtin
def output_path(out: Optional[str], workdir: str, format: str, overwrite: bool = False) -> str:
  """`out` as given when it names a file; `<out or workdir/export>/<format>.safetensors` for a directory (an
  existing one, or `out` ending in '/'). Checked with `outputs.check_file` (OutputError); creates nothing."""
  if out and not out.endswith(os.sep) and not os.path.isdir(out):
    path = out
  else:
    path = os.path.join(out or os.path.join(workdir, "export"), f"{format}.safetensors")
  return outputs.check_file(path, overwrite, "--out" if out else "the default --out", workdirs=(workdir,))


# pylint: disable-next=redefined-builtin
def export_run(workdir: str, out: Optional[str] = None, format: str = "timm", *, overwrite: bool = False,
               allow_unfinished: bool = False, with_base: bool = True) -> list[str]:
  """Writes the newest checkpoint of the finished run in `workdir` in `format` ('timm' | 'adapter' | 'peft' |
  'lora' at full rank; `export_lora_run` takes a rank).

  Args:
    workdir: a training run's workdir (`python -m jpeft.main`).
    out: the file to write, or a directory to write `<format>.safetensors` into; default `<workdir>/export/`.
      For 'peft' and 'lora': the directory to write (default `<workdir>/export/<format>`).
    format: see the module docstring.
    overwrite: replace an existing output file (never one of a run's own records).
    allow_unfinished: export a run that did not reach its last step (or whose newest checkpoint is damaged) from
      its newest intact checkpoint; the metadata records the step ('step', 'planned_step', 'finished').
    with_base: for 'peft' and 'lora', also write the backbone (base_model.safetensors) into the directory.
  Returns:
    The paths written.
  Raises:
    ExportError (bad format, a method that does not merge into timm's ViT), OutputError (an existing output
    without `overwrite`, or a run's record), UnfinishedRunError (an unfinished run without `allow_unfinished`),
    ConfigError (no checkpoint, or for 'timm' a pretrained file that changed since the run recorded its
    SHA-256), CheckpointError (the backbone the run points to cannot be read; needed for 'timm' only).
  """
  if format not in FORMATS:
    raise ExportError(f"--format={format!r} is not an export format: use 'timm' (a merged plain ViT, for "
                      "re-parameterisable methods), 'adapter' (any method: its trainable parameters), 'peft' "
                      "(the PyTorch PEFT library's format) or 'lora' (a re-parameterisable run as a LoRA in it).")
  if format == "lora":
    return export_lora_run(workdir, out, "full", with_base, overwrite=overwrite,
                           allow_unfinished=allow_unfinished)[0]
  if format == "peft":
    from jpeft.export import peft_export  # pylint: disable=import-outside-toplevel  (it imports this module)
    directory = peft_export.output_dir(out, workdir, format, overwrite)  # before anything is read
    saved = reuse.load_run(workdir, allow_unfinished=allow_unfinished)
    run = {RUN_METADATA_KEY: json.dumps(_run_metadata(saved), sort_keys=True)}
    return peft_export.export_peft(saved, directory, run, with_base, overwrite)
  path = output_path(out, workdir, format, overwrite)  # before anything is read: a bad --out fails at once
  saved = reuse.load_run(workdir, allow_unfinished=allow_unfinished)
  config = saved.config
  methods = peft.build_methods(config.method, config.peft)
  run = {RUN_METADATA_KEY: json.dumps(_run_metadata(saved), sort_keys=True)}
  if format == "adapter":
    save_adapter(path, saved.trainable, methods, metadata=run, overwrite=overwrite)
    return [path]
  if not all(m.mergeable for m in methods):
    timm_state_dict({}, methods)  # raises the ExportError before the backbone is loaded for nothing
  model_setup.check_pretrained(config, saved.meta, workdir)
  setup = model_setup.build(config)  # the frozen backbone the run trained against
  tensors = timm_state_dict(partition.combine(saved.trainable, setup.frozen), methods, config.merge_factor)
  name, kwargs = timm_architecture(config.model.variant, config.model.style, config.data.image_size,
                                   tasks.get_task(config.task).num_classes)
  save_safetensors(path, tensors, {**timm_metadata(name, kwargs), **run}, overwrite)
  return [path]


def export_lora_run(workdir: str, out: Optional[str] = None, rank: str = "full", with_base: bool = True, *,
                    overwrite: bool = False, allow_unfinished: bool = False) -> tuple[list[str], dict]:
  """Writes the finished run in `workdir` as a rank-`rank` LoRA directory ('full' or an integer; default
  <workdir>/export/lora) -> (paths, report: rank, each Linear's relative SVD error, the logit change).
  `overwrite` and `allow_unfinished` as for `export_run`."""
  from jpeft.export import peft_export  # pylint: disable=import-outside-toplevel  (it imports this module)
  directory = peft_export.output_dir(out, workdir, "lora", overwrite)  # before anything is read
  saved = reuse.load_run(workdir, allow_unfinished=allow_unfinished)
  run = {RUN_METADATA_KEY: json.dumps(_run_metadata(saved), sort_keys=True)}
  return peft_export.export_lora(saved, directory, run, rank, with_base, overwrite)
