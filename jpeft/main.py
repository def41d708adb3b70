"""Trains and evaluates one PEFT run from a config file.

  python -m jpeft.main --config=configs/vtab_lora.py --config.task=dtd --workdir=runs/dtd_lora

Modes (--config.mode): 'tune' trains on train800 and evaluates val200; 'final' trains on train800val200 and
evaluates test; 'eval' evaluates the newest checkpoint in --workdir (on --config.eval_split, default the
trained mode's eval split). Any config field can be overridden with --config.<field>=<value>
(e.g. --config.optim.lr=1e-2 --config.peft.lora.rank=16 --config.pretrained.name=''); see
jpeft/config_base.py for every field and its meaning. The same command started again resumes from the newest
checkpoint in --workdir.

Compiled XLA programs are saved in --compilation_cache (default $JPEFT_COMPILATION_CACHE, else
~/.cache/jpeft/xla; '' turns it off), so a second run with the same shapes compiles nothing; the last line
printed says how many programs the run compiled and how many it loaded from there.

Writes to --workdir: result.json (last- and best-epoch accuracy, trainable parameters, wall time, images/s),
logits_<split>.npy and labels_<split>.npy, metrics.jsonl, tb/ (TensorBoard) and checkpoints/ (trainable
parameters and optimizer state only, with a pointer to the pretrained backbone); mode 'eval' writes
eval_<split>.json, eval_logits_<split>.npy and eval_labels_<split>.npy beside them. One process at a time per
workdir: a second one exits with status 1 without touching it.

Ctrl-C (SIGINT) or SIGTERM stops the run between two steps, saves a checkpoint of the step reached and exits
with status 130 / 143 after one line saying so; the same command resumes (docs/notes/28-signals.md).
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jpeft import cli, interrupts
from jpeft.train import trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file returning an ml_collections.ConfigDict (e.g. configs/vtab_lora.py); "
    "override any field with --config.<field>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results; a run started "
                               "again with the same workdir resumes. Default: runs/<config file name>.")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()
flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: set options as --config.<field>=<value>.")
  cli.quiet_logging_unless_asked()
  config = _CONFIG.value
  cli.start_distributed(config, "jpeft")
  logging.info("Config:\n%s", config)
  workdir = _WORKDIR.value or os.path.join(
      "runs", os.path.splitext(os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"])))[0])
  # `compare_methods` (e.g. the demo's ('linear',)) trains the same config with other methods, each in
  # <workdir>/<method>, and prints their accuracies beside the main one.
  compare = config.get("compare_methods", ()) if config.mode != "eval" else ()
  runs = [(config.method, workdir)] + [(m, os.path.join(workdir, m)) for m in compare]
  results = []
  method_workdir = workdir
  try:
    # `raised` may raise on leaving its block (a signal Python dropped), so the handlers below enclose it.
    with cli.compilation_cache(_COMPILATION_CACHE.value) as compiles, interrupts.raised():
      for method, method_workdir in runs:
        config.method = method
        results.append(trainer.run(config, method_workdir))
  except cli.USER_ERRORS as e:
    # A user mistake or an environment problem: one paragraph, no traceback; checkpoints on disk are kept.
    print(f"jpeft: error: {e}", file=sys.stderr)
    sys.exit(1)
  except interrupts.Interrupted as e:  # Ctrl-C or SIGTERM: where the run stopped, exit 130 / 143
    print(f"jpeft: {interrupts.describe(e, os.path.join(method_workdir, 'checkpoints'))}", file=sys.stderr)
    sys.exit(e.exit_code)
  # Short on purpose: the accuracies, where the full record is, and the compilation count (result.json has the
  # rest: every evaluation, parameters, wall time, images/s).
  split = results[0].get("eval_split") or results[0]["split"]  # mode 'eval' reports `split`
  record = "result.json" if config.mode != "eval" else f"eval_{split}.json"
  print(f"{results[0]['task']} {split} accuracy: " + " | ".join(f"{r['method']} {r['accuracy']:.3f}" for r in results))
  print("results: " + ", ".join(os.path.join(w, record) for _, w in runs))
  print(compiles.summary())


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft"))
