"""Classifies new images with fine-tuned runs and writes the top-k predictions as a CSV.

  python -m jpeft.predict --workdir=runs/dtd_lora --images=photos/ --out=preds.csv [--top_k=5]
  python -m jpeft.predict --workdirs=runs/dtd_lora,runs/dtd_dora --images='photos/*.jpg' --out=preds.csv --ensemble

Columns: image, then per run (named by its workdir's folder) and, with --ensemble, 'ensemble' (the runs' mean
probabilities): <run>_top<r>_class, _name, _prob. --class_names: 'imagenet' or a text file with one name per
line (default: the class index). Unreadable images are listed on stderr and skipped. An existing --out is refused.
"""
import os
import sys

from absl import app, flags

from jpeft import cli
from jpeft.train.errors import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of a training run.")
_WORKDIRS = flags.DEFINE_list("workdirs", None, "Several runs of one backbone and preprocessing, scored together.")
_IMAGES = flags.DEFINE_string("images", None, "A directory of images, or a glob ('photos/*.jpg').")
_OUT = flags.DEFINE_string("out", None, "The CSV file to write (must not exist).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes per image and run.")
_ENSEMBLE = flags.DEFINE_bool("ensemble", False, "Also a column of the runs' mean probabilities.")
_CLASS_NAMES = flags.DEFINE_string("class_names", None, "'imagenet' or a file with one class name per line.")
flags.mark_flags_as_required(["images", "out"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
  cli.quiet_logging_unless_asked()
  from jpeft import predict, zeroshot  # pylint: disable=import-outside-toplevel
  try:
    workdirs = list(_WORKDIRS.value or []) + ([_WORKDIR.value] if _WORKDIR.value else [])
    if not workdirs:
      raise ConfigError("pass --workdir=RUN or --workdirs=RUN1,RUN2.")
    if os.path.exists(_OUT.value):
      raise ConfigError(f"--out={_OUT.value!r} exists; jpeft.predict never replaces files: name a new file.")
    if _TOP_K.value < 1:
      raise ConfigError(f"--top_k={_TOP_K.value} must be at least 1.")
    try:
      names = zeroshot.read_list(_CLASS_NAMES.value, "class names") if _CLASS_NAMES.value else None
    except ValueError as e:
      raise ConfigError(f"--class_names: {e}") from None
    rows, skipped, num_classes = predict.predict(workdirs, _IMAGES.value, _TOP_K.value,
                                                 _ENSEMBLE.value)
    if names is not None and len(names) != num_classes:
      raise ConfigError(f"--class_names={_CLASS_NAMES.value!r} has {len(names)} names; the runs have "
                        f"{num_classes} classes.")
    predict.write_csv(_OUT.value, rows, names)
  except cli.USER_ERRORS as e:
    print(f"jpeft.predict: error: {e}", file=sys.stderr)
    sys.exit(1)
  for path in skipped:
    print(f"jpeft.predict: skipped unreadable image {path}", file=sys.stderr)
  print(f"wrote {_OUT.value}: {len(rows)} images, {len(skipped)} skipped")


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "jpeft.predict", dict_flags=()))
