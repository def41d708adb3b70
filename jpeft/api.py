"""A short Python API for notebooks: a backbone by name, a method, the study's recipe, in a few lines.

  import jpeft
  jpeft.summary('mini/8', 'lora')                  # the trainable-parameter table (nothing is loaded)
  run = jpeft.finetune('mini/8', 'lora', 'mini_count', workdir='runs/lora', optim=dict(epochs=5))
  run.result['accuracy']                           # result.json of the run, as a dict
  run.evaluate(split='test')                       # eval_test.json, as a dict
  params = run.merged_params()                     # the plain ViT with the method folded in
  run.export('export/lora', format='adapter')      # files written by jpeft.export.export_run

Each call is a thin layer over what the command line runs: `make_config` builds the same ConfigDict as the
config files (`jpeft.config_base`), `finetune` calls `jpeft.train.trainer.run` (same workdir layout, resumes the
same way, so `python -m jpeft.main` with the equivalent flags continues a run started here and vice versa).
Overrides are keyword arguments naming config fields; a dict updates the fields of a sub-config that it names:
`optim=dict(epochs=2, lr=1e-2)`, `peft=dict(lora=dict(rank=4))`, `data=dict(data_dir='/data/tfds')`.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
from typing import Any, Iterator, Mapping, Optional

import jax
import ml_collections

from jpeft import cli, config_base, peft
from jpeft.peft import partition
from jpeft.train import evaluation, model_setup, sharding, trainer

# The offline backbone: `backbone='mini/8'` runs the demo's recipe (`config_base.demo_config`: 32x32 Mini VTAB).
MINI = "mini/8"
_SIZE_WORDS = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}


def _model_fields(backbone: str) -> Optional[dict[str, Any]]:
  """{model.variant, model.style[, data.normalization]} for a known checkpoint name (see docs/how-to/checkpoints.md's
  table), or None when the name does not say."""
  match = re.fullmatch(r"(?:ViT-)?(Ti|S|B|L|H)_(\d+)(-i21k-.*)?", backbone)  # ImageNet-21K names, AugReg stems
  if match:
    return {"model.variant": f"{match.group(1)}/{match.group(2)}", "model.style": "vit"}
  if backbone in ("clip-vit-b16-openai", "openai/clip-vit-base-patch16"):
    return {"model.variant": "B/16", "model.style": "clip"}
  match = re.fullmatch(r"timm/vit_(tiny|small|base|large|huge)_patch(\d+)_(\w+)\..*", backbone)
  if match:
    fields = {"model.variant": f"{_SIZE_WORDS[match.group(1)]}/{match.group(2)}", "model.style": "vit"}
    if match.group(3).startswith("clip"):
      fields["model.style"] = "clip"
    elif match.group(3).startswith("dinov2"):
      fields.update({"model.style": "dinov2", "data.normalization": "imagenet"})
    return fields
  return None


def _apply(node: ml_collections.ConfigDict, overrides: Mapping[str, Any], prefix: str = "") -> None:
  """Sets `overrides` on `node`; a dict value updates a sub-config field by field. Only `peft` may gain entries
  (one per method; `peft.build_methods` checks their fields)."""
  for key, value in overrides.items():
    name = prefix + key
    if key not in node and prefix != "peft.":
      raise ValueError(f"jpeft: '{name}' names no config field. Fields here: {sorted(node.keys())} (all of them "
                       "with their meaning: jpeft/config_base.py). Pass a sub-config's fields as a dict, e.g. "
                       "optim=dict(epochs=10), peft=dict(lora=dict(rank=4)).")
    if isinstance(value, Mapping) and isinstance(node.get(key), ml_collections.ConfigDict):
      _apply(node[key], value, name + ".")
    else:
      node[key] = value


def make_config(backbone: str = MINI, method: str = "lora", task: Optional[str] = None,
                **overrides) -> ml_collections.ConfigDict:
  """The run config: the study's recipe (`config_base.get_config`; for `backbone='mini/8'` the offline demo's,
  `config_base.demo_config`) for `method` on `task`, with `overrides` applied.

  Args:
    backbone: 'mini/8' (shipped, offline), a known checkpoint name ('ViT-B_16', an AugReg stem,
      'clip-vit-b16-openai', 'timm/vit_base_patch16_224.augreg_in21k', ...), whose name gives model.variant
      and model.style, or a checkpoint file (then pass model=dict(variant=..., style=...)).
    method: registered method names joined by '+' ('lora', 'lora+bitfit', 'linear'); each named method gets
      its default hyperparameters under peft.<name> (as configs/vtab_<method>.py does) unless the recipe has
      them.
    task: a registered task ('dtd', 'mini_count', ...); None keeps the recipe's (dtd; mini_count for mini/8).
    **overrides: config fields, a dict for a sub-config's fields: optim=dict(epochs=2), mode='tune'.
  Raises:
    ValueError: unknown backbone name without model.variant, unknown method, or a field that does not exist.
  """
  model = overrides.get("model", {})
  if backbone == MINI:
    config = config_base.demo_config()
    del config["compare_methods"]  # the CLI's side-by-side runs; the API trains one method per call
    config.method = method
  else:
    config = config_base.get_config(method)
    fields = _model_fields(backbone)
    if fields is None and "variant" not in model:
      raise ValueError(f"jpeft: backbone '{backbone}' is neither 'mini/8' nor a checkpoint name that says its "
                       "architecture ('ViT-B_16', 'B_16-i21k-...', 'clip-vit-b16-openai', "
                       "'timm/vit_<size>_patch<p>_<tag>...'). For a checkpoint file or another name pass the "
                       "architecture too, e.g. model=dict(variant='B/16', style='vit').")
    config_base.apply_overrides(config, fields or {})
    if os.path.isfile(os.path.expanduser(backbone)):
      config.pretrained.name, config.pretrained.path = "", backbone
    else:
      config.pretrained.name = backbone
  for name in method.split("+") if isinstance(method, str) else ():
    if name.strip() not in config.peft:
      config.peft[name.strip()] = peft.default_hparams(name.strip())
  if task is not None:
    config.task = task
  _apply(config, overrides)
  peft.build_methods(config.method, config.peft)  # a bad method or hyperparameter fails here, before any compute
  return config


def summary(backbone: str = MINI, method: str = "lora", task: Optional[str] = None, **overrides) -> None:
  """Prints the trainable-parameter table of `method` on `backbone` (the head sized for `task`), like the
  PyTorch PEFT library's `print_trainable_parameters`. Arguments as `make_config`; only shapes are computed
  (no checkpoint or data is read)."""
  config = make_config(backbone, method, task, **overrides)
  task_obj, methods, _, init_params = model_setup.build_model(config)
  shapes = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  print(f"{config.model.variant} ({backbone}) + {config.method}, head for {task_obj.name} "
        f"({task_obj.num_classes} classes):")
  print(peft.summary(shapes, partition.label_params(shapes, methods)))


@contextlib.contextmanager
def _compiling(cache_dir: Optional[str]) -> Iterator[None]:
  with cli.compilation_cache(cli.default_compilation_cache() if cache_dir is None else cache_dir):
    yield


@dataclasses.dataclass
class Run:
  """A trained run in `workdir`: its config and result.json (`result`), and what can be done with it after."""
  config: ml_collections.ConfigDict
  workdir: str
  result: dict
  compilation_cache: Optional[str] = None

  def __repr__(self) -> str:
    r = self.result
    return (f"Run({r['task']}/{r['method']}, {r['mode']}: {r['eval_split']} accuracy {r['accuracy']:.4f}, "
            f"{r['trainable_params']:,} trainable params, workdir={self.workdir!r})")

  def evaluate(self, split: Optional[str] = None) -> dict:
    """Evaluates the run's newest checkpoint on `split` (default: the split it was evaluated on) through mode
    'eval'; writes eval_<split>.json and eval_logits/labels_<split>.npy into the workdir and returns
    {task, method, split, accuracy, loss, step, epoch, workdir}."""
    config = copy.deepcopy(self.config)
    config.mode, config.eval_split = "eval", split or ""
    with _compiling(self.compilation_cache):
      return trainer.run(config, self.workdir)

  def merged_params(self) -> dict:
    """The nested parameters of the plain ViT (head included) computing what the trained run computes, the
    methods folded in at config.merge_factor (`jpeft.peft.reparam.merge`). Raises ValueError for methods that
    cannot be merged (prompts, adapters with a nonlinearity, ...)."""
    setup = model_setup.build(self.config)
    state, _ = evaluation.restore_newest(self.config, self.workdir, setup, sharding.make_mesh())
    params = partition.combine(jax.device_get(state["trainable"]), setup.frozen)
    return peft.merge(params, setup.methods, merge_factor=self.config.merge_factor)

  # pylint: disable-next=redefined-builtin
  def export(self, out: str, format: str = "adapter", *, overwrite: bool = False,
             allow_unfinished: bool = False) -> list[str]:
    """Writes the run to `out` with `jpeft.export.export_run` ('adapter': the trainable parameters and method
    config; 'timm': the merged model as a timm checkpoint) and returns the paths written. An existing file is
    replaced only with `overwrite` (a run's own records never); an unfinished run is refused unless
    `allow_unfinished` (the file's metadata then records the step)."""
    from jpeft import export  # pylint: disable=import-outside-toplevel  (its dependencies load only when used)
    return export.export_run(self.workdir, out, format, overwrite=overwrite, allow_unfinished=allow_unfinished)


def finetune(backbone: str = MINI, method: str = "lora", task: Optional[str] = None, *, workdir: str,
             compilation_cache: Optional[str] = None, init_from_peft: Optional[str] = None, **overrides) -> Run:
  """Trains `method` on `backbone` for `task` with the study's recipe in `workdir`, evaluates, and returns the
  Run (its result.json as `.result`). Arguments as `make_config`; mode 'final' (train800val200 -> test) for
  mini/8, 'tune' (train800 -> val200) otherwise, unless mode= says. Started again with the same workdir and
  arguments it resumes (a finished run returns its result unchanged; reevaluate=True evaluates it again).
  compilation_cache: as jpeft.main's flag (None: $JPEFT_COMPILATION_CACHE, else ~/.cache/jpeft/xla; '': off).
  init_from_peft: a PyTorch PEFT adapter directory to start from (config.init_from.peft;
  jpeft/export/peft_import.py); the method and its hyperparameters are then the adapter's (`method` must name it
  or be left at 'lora'; peft=dict(...) may change training-only ones)."""
  if init_from_peft:
    from jpeft.export import peft_import  # pylint: disable=import-outside-toplevel
    name, hparams = peft_import.adapter_method(init_from_peft)
    if method not in ("lora", name):
      raise ValueError(f"jpeft.finetune: init_from_peft={init_from_peft!r} is a {name} adapter, but method="
                       f"{method!r}: leave method out (or pass method={name!r}).")
    peft_overrides = dict(overrides.pop("peft", None) or {})
    overrides["peft"] = {**peft_overrides, name: {**hparams, **peft_overrides.get(name, {})}}
    overrides["init_from"] = {**(overrides.get("init_from") or {}), "peft": init_from_peft}
    method = name
  config = make_config(backbone, method, task, **overrides)
  with _compiling(compilation_cache):
    result = trainer.run(config, workdir)
  return Run(config, workdir, result, compilation_cache)
