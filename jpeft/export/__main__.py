"""Exports a finished run: a merged plain ViT as timm safetensors, or the adapter alone.

  python -m jpeft.export --workdir=runs/dtd_lora --format=timm [--out=model.safetensors] [--overwrite]
  python -m jpeft.export --workdir=runs/dtd_lora --format=adapter [--out=runs/exports/] [--allow_unfinished]

Reads the newest checkpoint in --workdir (and, for timm, the pretrained backbone it points to); trains nothing.
An unfinished run (killed before its last step, or its newest checkpoint damaged) is refused unless
--allow_unfinished. --out is a file, or a directory to write <format>.safetensors into (default
<workdir>/export/); an existing file is replaced only with --overwrite, and a run's own records never. Prints
JSON {"paths": [...], "step", "planned_step", "finished"} and, for timm, the two lines that load the file in
PyTorch. See `jpeft.export` for the formats and what each holds.
"""
import json
import sys

from absl import app, flags

from jpeft import cli
from jpeft.export import FORMATS, RUN_METADATA_KEY, TIMM_METADATA_KEY, export_run, timm_usage

_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of a training run (python -m jpeft.main).")
_FORMAT = flags.DEFINE_enum("format", "timm", FORMATS, "timm: the PEFT methods merged into a plain ViT in timm's "
                            "layout (re-parameterisable methods only); adapter: the trainable parameters and the "
                            "methods' config, for any method.")
_OUT = flags.DEFINE_string("out", None, "Output file, or a directory for <format>.safetensors "
                           "(default <workdir>/export/).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output file (never a run's own records: "
                               "result.json, checkpoints/, ...).")
_ALLOW_UNFINISHED = flags.DEFINE_bool("allow_unfinished", False, "Export a run that did not reach its last step "
                                      "(or whose newest checkpoint is damaged) from its newest intact checkpoint; "
                                      "the step is recorded in the file and printed.")
flags.mark_flags_as_required(["workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass --workdir, --format and --out.")
  cli.quiet_logging_unless_asked()
  try:
    paths = export_run(_WORKDIR.value, _OUT.value, _FORMAT.value, overwrite=_OVERWRITE.value,
                       allow_unfinished=_ALLOW_UNFINISHED.value)
  except cli.USER_ERRORS as e:
    print(f"jpeft.export: error: {e}", file=sys.stderr)
    sys.exit(1)
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel
  with safe_open(paths[0], framework="np") as f:
    metadata = f.metadata()
  run = json.loads(metadata[RUN_METADATA_KEY])
  print(json.dumps({"paths": paths, **{k: run[k] for k in ("step", "planned_step", "finished")}}))
  if _FORMAT.value == "timm":
    print(f"# In PyTorch ({TIMM_METADATA_KEY} in the file's metadata; import timm, safetensors.torch):")
    print(timm_usage(paths[0], metadata))


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.export", dict_flags=()))
