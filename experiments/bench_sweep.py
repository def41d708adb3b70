"""Benchmark: N trials trained together (vmapped) vs the same N trials one after another.

  python experiments/bench_sweep.py [--trials=8] [--epochs=30] [--train_size=800] [--batch_sizes=8,32,64]
      [--cpu_devices=2] [--trainer_baseline]

Both sides use the sweep runner on the same tiny model (a mu/8 ViT, random backbone, LoRA rank 4), the same
32x32 task (a generated processed-folder task in a temporary directory, loaded once for both) and the same N
trials (lr spread over 1e-3..3e-2, one seed):
  vmapped     one chunk of N trials: one compiled program advances all N per step, the trial axis split
              over the devices (on a CPU, `--cpu_devices` XLA devices, one per core);
  sequential  N chunks of 1 trial on one device: one compiled program reused N times.
Each side runs all N trials twice with the same compiled programs: "cold" includes compilation (what one
sweep stage costs end to end), "warm" is training alone. Both sides run in one process, one after the
other, and their final val losses are compared (they train the same trials). This is repeated for each batch
size. Vmapping amortises the per-step overhead (dispatch, host batches, XLA's per-op cost on tiny arrays)
over N trials and lets independent trials run on separate cores without any communication; a large,
compute-bound step gains little on one core. With --trainer_baseline the same trials are also run as
separate `trainer.run` calls, each data-parallel over all devices (what running `python -m jpeft.main` once
per trial costs, process start-up excluded).
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import jax
import numpy as np

from jpeft import cli, config_base
from jpeft.sweep import grid, runner
from jpeft.train import trainer


def write_task(root: str, train_size: int, eval_size: int, classes: int = 4) -> None:
  """<root>/dtd/: 16x16 PNGs whose colour encodes the class, plus noise, in the processed-folder layout."""
  import tensorflow as tf
  task_dir = os.path.join(root, "dtd")
  os.makedirs(os.path.join(task_dir, "images"))
  rng = np.random.default_rng(0)
  colours = rng.uniform(0, 255, (classes, 3))
  index = 0
  for split, size in (("train800", train_size), ("val200", eval_size)):
    lines = []
    for _ in range(size):
      label = index % classes
      image = np.clip(colours[label] + rng.normal(0, 100, (16, 16, 3)), 0, 255).astype(np.uint8)
      tf.io.write_file(os.path.join(task_dir, f"images/{index}.png"), tf.io.encode_png(image))
      lines.append(f"images/{index}.png {label}")
      index += 1
    with open(os.path.join(task_dir, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--train_size", type=int, default=800, help="train images (VTAB-1K's train800: 800)")
  parser.add_argument("--batch_sizes", default="8,32,64", help="comma-separated; one benchmark per batch size")
  parser.add_argument("--cpu_devices", type=int, default=os.cpu_count(),
                      help="XLA devices the CPU is split into (default: one per core); ignored on GPU/TPU")
  parser.add_argument("--json", default="", help="also write the figures to this JSON file")
  parser.add_argument("--trainer_baseline", action="store_true",
                      help="also time the N trials as N separate trainer runs (what N `python -m jpeft.main` "
                           "calls do, minus process start-up: each builds, compiles, checkpoints, evaluates)")
  args = parser.parse_args()
  cli.set_cpu_devices(args.cpu_devices)

  root = tempfile.mkdtemp(prefix="bench_sweep_")
  try:
    write_task(root, args.train_size, 64)
    bench(args, root)
  finally:
    shutil.rmtree(root)


def bench(args, root: str) -> None:
  """Prints, per batch size, the warm and cold wall times of both sides and their ratios (and writes them to
  --json)."""
  trials = [grid.Trial("dtd", "lora", float(lr), 1e-4, (("lora.rank", 4),), 42)
            for lr in np.geomspace(1e-3, 3e-2, args.trials)]
  devices = jax.devices()
  report = dict(trials=args.trials, epochs=args.epochs, train_size=args.train_size, model="mu/8 + lora r4",
                devices=len(devices), platform=devices[0].platform, cpu_count=os.cpu_count(), batch_sizes=[])
  print(f"{args.trials} trials, mu/8 ViT + LoRA r=4, 32x32 images, {args.train_size} train images x "
        f"{args.epochs} epochs; vmapped on {len(devices)} {devices[0].platform} device(s), sequential on 1")
  for batch_size in map(int, args.batch_sizes.split(",")):
    config = config_base.get_config("lora")
    config.task, config.data.source, config.data.folder_root = "dtd", "folder", root
    config.data.image_size, config.model.variant, config.pretrained.name = 32, "mu/8", ""
    config.optim.batch_size, config.optim.epochs, config.optim.warmup_epochs = batch_size, args.epochs, 1
    config.eval_every_epochs = args.epochs
    data: dict = {}
    results = {}
    for name, chunk, mesh in (("vmapped", args.trials, runner.make_trial_mesh(devices)),
                              ("sequential", 1, runner.make_trial_mesh(devices[:1]))):
      group = runner.GroupRunner(config, trials, data, mesh)
      times, losses = [], []
      for _ in range(2):  # cold (compiles on its first chunk), then warm (the same programs again)
        start = time.perf_counter()
        rows = []
        for i in range(0, len(trials), chunk):
          rows += group.train(trials[i:i + chunk], "tune")[0]
        times.append(time.perf_counter() - start)
        losses.append([r["loss"] for r in rows])
      results[name] = dict(cold_s=times[0], warm_s=times[1], loss=losses[1])
    if args.trainer_baseline:
      start = time.perf_counter()
      for trial in trials:
        with tempfile.TemporaryDirectory() as workdir:
          trainer.run(grid.trial_config(config, trial, "tune", fold=False), workdir)
      trainer_s = time.perf_counter() - start
    v, s = results["vmapped"], results["sequential"]
    gap = float(np.max(np.abs(np.array(v["loss"]) - np.array(s["loss"]))))
    report["batch_sizes"].append(dict(
        batch_size=batch_size, steps_per_trial=(args.train_size // batch_size) * args.epochs,
        **{f"{name}_{kind}_s": r[f"{kind}_s"] for name, r in results.items() for kind in ("warm", "cold")},
        speedup_training=s["warm_s"] / v["warm_s"], speedup_compile_included=s["cold_s"] / v["cold_s"],
        max_val_loss_difference=gap, **(dict(trainer_runs_s=trainer_s) if args.trainer_baseline else {})))
    print(f"batch {batch_size} ({(args.train_size // batch_size) * args.epochs} steps per trial):")
    for name, r in results.items():
      print(f"  {name:10s}  warm (training only) {r['warm_s']:7.2f} s   cold (compile included) {r['cold_s']:7.2f} s")
    print(f"  speed-up vmapped vs sequential: training only {s['warm_s'] / v['warm_s']:.2f}x, "
          f"compile included {s['cold_s'] / v['cold_s']:.2f}x; max |val loss difference| {gap:.1e}")
    if args.trainer_baseline:
      print(f"  {args.trials} separate trainer runs: {trainer_s:7.2f} s; vmapped (cold) is "
            f"{trainer_s / v['cold_s']:.2f}x faster")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)
    print("written:", args.json)


if __name__ == "__main__":
  main()
