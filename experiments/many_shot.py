"""The many-shot study: methods x training-set sizes with the study's protocol, and LoRA's accuracy against rank.

  python experiments/many_shot.py --config=configs/manyshot_mini.py --workdir=runs/many_shot_mini \
      [--sizes=train50,train500] [--methods=linear,full,lora] [--lora_ranks=1,32] [--grid.lr=1e-3,1e-2]
      [--grid.wd=1e-4] [--rank_sizes=train50,train2000] [--trial_batch=8|auto] [--epochs_scale=1.0]

  python experiments/many_shot.py --config=configs/manyshot_cifar100.py --grid.lr=5e-4,1e-3 \
      --grid.wd=1e-4,1e-3 --workdir=runs/many_shot_cifar100

For every size of the config's task (`jpeft.data.manyshot`, smallest first) and method: tune every grid setting on
each of the size's tuning splits (five for the smallest sizes, averaged), select by mean val accuracy at the last
epoch, retrain the winner on the whole subset and test (`jpeft.sweep.protocol`; each size is a sweep of its own in
<workdir>/<size>, resumable). The size's recipe (epochs, warmup) comes from the protocol, times --epochs_scale.
Then, per rank in --lora_ranks and size, LoRA with the rank fixed (<workdir>/<size>/lora_rank<r>).

Writes to --workdir, after every size (so a stopped study keeps what it finished): results.csv (one row per method
and size: test and val accuracy, selected hyperparameters, trainable parameters), results.md (method x size
table), accuracy_vs_size.png and, with --lora_ranks, lora_rank.csv and lora_accuracy_vs_rank.png.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from absl import app, flags

from jpeft import cli, workdir_lock
from jpeft.data import manyshot
from jpeft.data import tasks as tasks_lib
from jpeft.sweep import grid as grid_lib
from jpeft.sweep import fit, protocol

_CONFIG = cli.define_config_file_or_exit("config", "configs/manyshot_mini.py",
                                         "Many-shot base config file (configs/manyshot_<dataset>.py); its task "
                                         "names the protocol, data.subset is set per size.", "many_shot")
_GRID = cli.define_config_dict_or_exit("grid", grid_lib.default_grid(), "Search grid; override as "
                                      "--grid.lr=5e-4,1e-3 or --grid.<method>.<field>=v1,v2.", "many_shot")
_SIZES = flags.DEFINE_list("sizes", None, "Sizes of the task's protocol (default: all, smallest first).")
_METHODS = flags.DEFINE_list("methods", ["linear", "full", "lora"], "Methods compared at every size.")
_LORA_RANKS = flags.DEFINE_list("lora_ranks", [], "LoRA ranks run on their own, for the accuracy-against-rank "
                                "plot (which also shows the lora runs of --methods at their selected rank).")
_RANK_SIZES = flags.DEFINE_list("rank_sizes", None, "Sizes of the rank study (default: every size of --sizes).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/many_shot", "Output and resume directory.")
_TRIAL_BATCH = fit.define_trial_batch_flag(8, "Trials trained together per compiled program")
_EPOCHS_SCALE = flags.DEFINE_float("epochs_scale", 1.0, "Multiplies every size's epochs and warmup (rounded, "
                                   "at least 1 epoch): shortened runs; 1.0 is the protocol's recipe.")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()

FIELDS = ["size", "per_class", "train_images", "method", "test_accuracy", "val_accuracy", "tune_splits",
          "trainable_params", "selected"]


def size_config(base, size: manyshot.Size, scale: float):
  """The base config at `size`, with the size's recipe (epochs and warmup times `scale`)."""
  config = base.copy_and_resolve_references()
  config.data.subset = size.name
  config.data.tune_split = 0
  config.optim.epochs = max(1, round(size.epochs * scale))
  config.optim.warmup_epochs = min(config.optim.epochs - 1, round(size.warmup_epochs * scale))
  config.eval_every_epochs = config.optim.epochs
  return config


def train_images(task: str, size: manyshot.Size, num_classes: int) -> int:
  if size.per_class is not None:
    return size.per_class * num_classes
  from jpeft.data import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline.num_examples(task, manyshot.get_many_shot(task).train(size))


def _row(size: manyshot.Size, images: int, summary: dict) -> dict:
  return dict(size=size.name, per_class=size.per_class, train_images=images, method=summary["method"],
              test_accuracy=summary["test_accuracy"], val_accuracy=summary["val_accuracy"],
              tune_splits=summary.get("tune_splits"), trainable_params=summary.get("trainable_params"),
              selected=summary["selected"])


def write_csv(rows, path, fields):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def write_table(rows, path: str) -> str:
  """results.md: methods x sizes, test accuracy in percent (and trainable parameters)."""
  sizes = list(dict.fromkeys((r["size"], r["train_images"]) for r in rows))
  methods = list(dict.fromkeys(r["method"] for r in rows))
  by = {(r["method"], r["size"]): r for r in rows}
  lines = ["| method | trainable params | " + " | ".join(f"{s} ({n})" for s, n in sizes) + " |",
           "|---|---|" + "---|" * len(sizes)]
  for m in methods:
    params = next((r["trainable_params"] for r in rows if r["method"] == m and r["trainable_params"]), None)
    cells = []
    for s, _ in sizes:
      acc = by.get((m, s), {}).get("test_accuracy")
      cells.append("" if acc is None else f"{100 * acc:.1f}")
    lines.append(f"| {m} | {params if params is not None else ''} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  with open(path, "w") as f:
    f.write(text)
  return text


def plot_curves(rows, key: str, series: str, path: str, xlabel: str, title: str, log_x: bool = True) -> None:
  """One line per value of `series`: test accuracy (%) against `key`."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for name in dict.fromkeys(r[series] for r in rows):
    points = sorted((r[key], 100 * r["test_accuracy"]) for r in rows
                    if r[series] == name and r["test_accuracy"] is not None)
    if points:
      ax.plot(*zip(*points), marker="o", label=str(name))
  if log_x:
    ax.set_xscale("log", base=2 if key == "rank" else 10)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv) -> None:
  del argv
  cli.quiet_logging_unless_asked()
  base = _CONFIG.value
  task = base.task
  try:
    protocol_ = manyshot.get_many_shot(task)
    sizes = [protocol_.size(s) for s in _SIZES.value] if _SIZES.value else list(protocol_.sizes)
    ranks = [int(r) for r in _LORA_RANKS.value]
  except ValueError as e:
    print(f"many_shot: error: {e}", file=sys.stderr)
    sys.exit(1)
  num_classes = tasks_lib.get_task(task).num_classes
  workdir = _WORKDIR.value
  rows, rank_rows = [], []
  try:
    with workdir_lock.hold(workdir, program="many_shot"), cli.compilation_cache(_COMPILATION_CACHE.value) as compiles:
      # Every size with the methods first, then the rank study: a stopped study has the main curve.
      rank_sizes = [protocol_.size(s) for s in _RANK_SIZES.value] if _RANK_SIZES.value else sizes
      for size, rank in [(size, None) for size in sizes] + [(size, r) for r in ranks for size in rank_sizes]:
        config = size_config(base, size, _EPOCHS_SCALE.value)
        images = train_images(task, size, num_classes)
        size_dir = os.path.join(workdir, size.name)
        if rank is None:
          for summary in protocol.run_sweep(config, [task], _METHODS.value, _GRID.value, size_dir,
                                            _TRIAL_BATCH.value):
            rows.append(_row(size, images, summary))
        else:
          grid = _GRID.value.copy_and_resolve_references()
          grid.lora.rank = (rank,)
          (summary,) = protocol.run_sweep(config, [task], ["lora"], grid, os.path.join(size_dir, f"lora_rank{rank}"),
                                          _TRIAL_BATCH.value)
          rank_rows.append(dict(_row(size, images, summary), rank=rank))
        write_csv(rows, os.path.join(workdir, "results.csv"), FIELDS)
        table = write_table(rows, os.path.join(workdir, "results.md"))
        plot_curves(rows, "train_images", "method", os.path.join(workdir, "accuracy_vs_size.png"),
                    "training images", f"{task}: test accuracy against training set size")
        if rank_rows:
          main_lora = [dict(r, rank=r["selected"]["lora.rank"]) for r in rows
                       if r["method"] == "lora" and r["selected"] and r["size"] in {x["size"] for x in rank_rows}]
          all_ranks = sorted(rank_rows + main_lora, key=lambda r: (r["train_images"], r["rank"]))
          write_csv(all_ranks, os.path.join(workdir, "lora_rank.csv"), FIELDS + ["rank"])
          plot_curves(all_ranks, "rank", "size", os.path.join(workdir, "lora_accuracy_vs_rank.png"),
                      "LoRA rank", f"{task}: LoRA test accuracy against rank, per size")
  except (grid_lib.GridError, *cli.USER_ERRORS) as e:
    print(f"many_shot: error: {e}", file=sys.stderr)
    sys.exit(1)
  print(table)
  print(compiles.summary())


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "many_shot", ("config", "grid")))
