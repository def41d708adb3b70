"""Analyses a sweep's saved predictions: agreement, confident predictions, ensembles, calibration.

  python -m jpeft.analysis --sweep=runs/sweep [--tasks=dtd,eurosat] [--methods=lora,adapter,ssf]
      [--out=runs/sweep/analysis] [--confident_fraction=0.1] [--venn=lora,adapter,ssf]

Reads <sweep>/summary.jsonl, trials.jsonl and predictions/ (written by `python -m jpeft.sweep`); trains nothing.
Writes to --out (default <sweep>/analysis): summary.md (each finding with its numbers, linking the rest),
agreement*.md/.csv and agreement_<group>.png (heat maps), confident*.md/.csv, venn.md/.csv and
confident_venn.png, ensembles_{pairs,topk,chosen,seeds,groups}.md/.csv, calibration.md/.csv, reliability.png
and accuracy_vs_confidence.png. See `jpeft.analysis` and each module's docstring for the definitions.
"""
import sys

from absl import app, flags

from jpeft import analysis, cli

_SWEEP = flags.DEFINE_string("sweep", None, "A sweep workdir (the --workdir of `python -m jpeft.sweep`).")
_TASKS = flags.DEFINE_list("tasks", None, "Tasks to analyse (default: every task of the sweep).")
_METHODS = flags.DEFINE_list("methods", None, "Methods to analyse (default: every method of the sweep).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <sweep>/analysis); a new or empty folder, or "
                           "an earlier analysis, which is replaced.")
_FRACTION = flags.DEFINE_float("confident_fraction", analysis.confident.DEFAULT_FRACTION,
                               "Share of each task's test samples in a method's confident set (highest max "
                               "softmax), pooled over tasks.")
_VENN = flags.DEFINE_list("venn", None, "Three methods for the Venn figure of correct confident predictions "
                          "(default: lora,adapter,ssf if analysed, else the first three).")
flags.mark_flag_as_required("sweep")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  try:
    path = analysis.run(_SWEEP.value, _OUT.value, _TASKS.value, _METHODS.value, _FRACTION.value, _VENN.value)
  except analysis.AnalysisError as e:
    print(f"jpeft.analysis: error: {e}", file=sys.stderr)
    sys.exit(1)
  with open(path) as f:
    print(f.read())
  print(f"Written: {path}")


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.analysis", ()))
