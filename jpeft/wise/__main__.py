"""python -m jpeft.wise --workdir=<finished run>[,<run>...]: WiSE-FT tables (json, csv, md) and figure (png).

An unfinished run (killed before its last step, or its newest checkpoint damaged) is refused, exit 1, unless
--allow_unfinished; the step each run's fine-tuned end comes from is in every output."""
import sys

from absl import app, flags

from jpeft import cli, wise
from jpeft.train.errors import ConfigError

_WORKDIR = flags.DEFINE_list("workdir", None, "Finished training runs (their --workdir), comma-separated; one "
                             "curve each. Every run must have recorded init_head.npz (the head it started from).")
_ALPHAS = flags.DEFINE_list("alphas", [f"{a / 10:g}" for a in range(11)],
                            "Mixing coefficients in [0, 1]: 0 is the zero-shot (start) model, 1 the fine-tuned one.")
_SPLITS = flags.DEFINE_list("splits", None, "Evaluation sets as <task>:<split>, the in-distribution one first "
                            "(default: the first run's eval split, then the test split of its config.shift_tasks).")
_OUT = flags.DEFINE_string("out", None, "Output folder for wise.{json,csv,md,png} (default: <workdir>/wise; "
                           "required with several runs).")
_ALLOW_UNFINISHED, _OVERWRITE = cli.define_run_reading_flags("the alpha = 1 end", "every output", overwrite=True)
flags.mark_flag_as_required("workdir")


def _alphas(values) -> list[float]:
  try:
    alphas = [float(v) for v in values]
  except ValueError:
    raise ConfigError(f"--alphas={','.join(values)}: give numbers in [0, 1], e.g. --alphas=0,0.5,1.") from None
  if not alphas or any(not 0 <= a <= 1 for a in alphas):
    raise ConfigError(f"--alphas={','.join(values)}: every alpha must be in [0, 1] (0: zero-shot, 1: fine-tuned).")
  return alphas


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  cli.quiet_logging_unless_asked()
  try:
    if len(_WORKDIR.value) > 1 and not _OUT.value:
      raise ConfigError(f"--workdir names {len(_WORKDIR.value)} runs: pass --out=<folder> for their joint table.")
    paths = wise.run(_WORKDIR.value, _alphas(_ALPHAS.value), _SPLITS.value, _OUT.value, _ALLOW_UNFINISHED.value,
                     _OVERWRITE.value)
  except cli.USER_ERRORS as e:
    print(f"jpeft.wise: error: {e}", file=sys.stderr)
    sys.exit(1)
  with open(paths["md"]) as f:
    print(f.read())
  print("Written: " + ", ".join(paths.values()))


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.wise", ()))
