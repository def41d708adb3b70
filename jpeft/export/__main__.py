"""Exports a finished run: a merged plain ViT as timm safetensors, the adapter alone, or a PyTorch PEFT adapter.

  python -m jpeft.export --workdir=runs/dtd_lora --format=timm [--out=model.safetensors] [--overwrite]
  python -m jpeft.export --workdir=runs/dtd_lora --format=adapter [--out=runs/exports/] [--allow_unfinished]
  python -m jpeft.export --workdir=runs/dtd_lora --format=peft [--out=runs/dtd_lora_peft] [--nowith_base]
  python -m jpeft.export --workdir=runs/dtd_ssf --format=lora --rank=16|full [--out=runs/dtd_ssf_lora16]

Reads the newest checkpoint in --workdir (and, for timm, peft and lora, the pretrained backbone it points to);
trains nothing. An unfinished run (killed before its last step, or its newest checkpoint damaged) is refused
unless --allow_unfinished. For timm and adapter, --out is a file, or a directory to write <format>.safetensors
into (default <workdir>/export/); for peft and lora it is the directory to write (default
<workdir>/export/<format>). An existing file is replaced only with --overwrite, and a run's own records never.
Prints JSON {"paths": [...], "step", "planned_step", "finished"} and, for timm, peft and lora, the lines that
load the files in PyTorch. See `jpeft.export` for the formats and what each holds.
"""
import json
import os
import sys

from absl import app, flags

from jpeft import cli
from jpeft.export import FORMATS, RUN_METADATA_KEY, TIMM_METADATA_KEY, export_lora_run, export_run, timm_usage

_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of a training run (python -m jpeft.main).")
_FORMAT = flags.DEFINE_enum("format", "timm", FORMATS, "timm: the PEFT methods merged into a plain ViT in timm's "
                            "layout (re-parameterisable methods only); adapter: the trainable parameters and the "
                            "methods' config, for any method; peft: a PyTorch PEFT adapter directory (lora, dora, "
                            "vera, ia3, oft, boft, loha, lokr); lora: any re-parameterisable run as a rank --rank "
                            "LoRA in that format.")
_OUT = flags.DEFINE_string("out", None, "timm, adapter: the output file, or a directory for "
                           "<format>.safetensors (default <workdir>/export/); peft, lora: the directory to write "
                           "(default <workdir>/export/<format>).")
_ALLOW_UNFINISHED, _OVERWRITE = cli.define_run_reading_flags("exported", "the file (and printed)",
                                                          overwrite=True)
_WITH_BASE = flags.DEFINE_bool("with_base", True, "--format=peft: also write the run's backbone as "
                                "base_model.safetensors (timm layout), so the printed lines load it offline.")
_RANK = flags.DEFINE_string("rank", "full", "--format=lora: the LoRA rank R (a positive integer) or 'full' (exact).")
flags.mark_flags_as_required(["workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass --workdir, --format and --out.")
  cli.quiet_logging_unless_asked()
  try:
    if _FORMAT.value == "lora":
      paths, report = export_lora_run(_WORKDIR.value, _OUT.value, _RANK.value, _WITH_BASE.value,
                                      overwrite=_OVERWRITE.value, allow_unfinished=_ALLOW_UNFINISHED.value)
    else:
      paths = export_run(_WORKDIR.value, _OUT.value, _FORMAT.value, overwrite=_OVERWRITE.value,
                         allow_unfinished=_ALLOW_UNFINISHED.value, with_base=_WITH_BASE.value)
  except cli.USER_ERRORS as e:
    print(f"jpeft.export: error: {e}", file=sys.stderr)
    sys.exit(1)
  weights = [p for p in paths if p.endswith(".safetensors")][0]
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel
  with safe_open(weights, framework="np") as f:
    metadata = f.metadata()
  run = json.loads(metadata[RUN_METADATA_KEY])
  print(json.dumps({"paths": paths, **{k: run[k] for k in ("step", "planned_step", "finished")}}))
  if _FORMAT.value == "lora":
    errors = report["relative_error"]
    print(f"# rank {report['rank']}: relative error ||Delta - B A|| / ||Delta|| per Linear "
          f"(max {max(errors.values()):.2e}):")
    for layer, error in errors.items():
      print(f"#   {layer}: {error:.2e}")
    if "max_logit_change" in report:
      print(f"# logit change on 8 random images: max {report['max_logit_change']:.2e} "
            f"(max |logit| {report['max_logit']:.2f})")
  if _FORMAT.value in ("peft", "lora"):
    from jpeft.export import peft_export  # pylint: disable=import-outside-toplevel
    print("# In PyTorch (timm, safetensors and peft installed):")
    print(peft_export.usage(os.path.dirname(paths[0])))
  if _FORMAT.value == "timm":
    print(f"# In PyTorch ({TIMM_METADATA_KEY} in the file's metadata; import timm, safetensors.torch):")
    print(timm_usage(paths[0], metadata))


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.export", dict_flags=()))
