"""jpeft's train step with candidate speed levers, beside its default step and timm's, in one run (issue 13).

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python experiments/cpu_levers.py \\
      --cases=S/16:8 --methods=lora --levers=default,devices=2 --rounds=3 --steps_per_round=2

Each lever is a jpeft side: `default` (the config as it is, on one device), or `+`-joined settings:
`devices=N` trains data-parallel over the first N local devices (on CPU, start the process with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` to have them), `jax_<option>=value` sets a JAX option
while the side is built and compiled (`jax_default_prng_impl=unsafe_rbg`: the PRNG of the step's dropout and
drop path), `xla_<option>=value` compiles the side's step with that XLA debug option (`jax.jit`'s
compiler_options; repeated enums by full name: `xla_cpu_use_onednn=True+xla_cpu_experimental_onednn_fusion_type=
LIBRARY_FUSION_TYPE_DOT`, oneDNN matmuls), any other `key=value` sets a config field (`model.dtype=bfloat16`).
All sides and timm's step (bench_vs_timm's) alternate in rounds, so load from other processes hits them alike;
each side's images/s is the median over its steps, ratios are to timm's and to jpeft's default. Its rows (with
the load average) go to --out as JSON.
"""
import ast
import json
import os
import statistics

import bench_vs_timm  # first: imports torch before JAX (see there)
from bench_vs_timm import torch
import jax
from absl import app, flags

from jpeft import cli, config_base
from jpeft.bench import measure

# --cases, --methods, --rounds, --steps_per_round and --out are bench_vs_timm's flags (defined on import).
_LEVERS = flags.DEFINE_list("levers", ["default"], "jpeft sides: default, or '+'-joined key=value settings.")
FLAGS = flags.FLAGS


def lever_loop(lever: str, variant: str, method: str, batch_size: int) -> measure.TrainLoop:
  config = bench_vs_timm.jpeft_config(variant, method, batch_size, "float32")
  devices, jax_options, xla_options = 1, {}, {}
  for setting in lever.split("+") if lever != "default" else []:
    key, value = setting.split("=", 1)
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass  # a string
    if key == "devices":
      devices = value
    elif key.startswith("jax_"):
      jax_options[key] = value
    elif key.startswith("xla_"):
      xla_options[key] = value
    else:
      config_base.apply_overrides(config, {key: value})
  if devices > jax.device_count():
    raise SystemExit(f"Lever '{lever}' needs {devices} devices but this process has {jax.device_count()}: start "
                     f"it with XLA_FLAGS=--xla_force_host_platform_device_count={devices}.")
  previous = {key: getattr(jax.config, key) for key in jax_options}
  try:  # the side's key and program are made under its JAX options; the compiled program keeps them
    for key, value in jax_options.items():
      jax.config.update(key, value)
    return measure.TrainLoop(config, jax.devices()[:devices], compiler_options=xla_options or None)
  finally:
    for key, value in previous.items():
      jax.config.update(key, value)


def main(argv) -> None:
  del argv
  bench_vs_timm.check_out_path(FLAGS.out)
  print(f"jax {jax.__version__} on {jax.device_count()}x {jax.devices()[0].device_kind}; {bench_vs_timm.TORCH_LINE}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {os.getloadavg()}", flush=True)
  rows = []
  for case in FLAGS.cases:
    variant, batch_size = case.split(":")[0], int(case.split(":")[1])
    for method in FLAGS.methods:
      sides = {lever: lever_loop(lever, variant, method, batch_size) for lever in _LEVERS.value}
      if torch is not None:
        sides["timm"] = bench_vs_timm.TimmStep(variant, method, batch_size, "float32")
      times = {name: [] for name in sides}
      load = [os.getloadavg()[0]]
      for round_index in range(FLAGS.rounds + 1):
        for name, side in sides.items():
          spent = side.run(FLAGS.steps_per_round)
          if round_index:  # round 0 warms up
            times[name] += spent
        load.append(os.getloadavg()[0])
      speed = {name: batch_size / statistics.median(t) for name, t in times.items()}
      for name in sides:
        row = dict(variant=variant, batch_size=batch_size, method=method, side=name, images_per_s=speed[name],
                   vs_timm=speed[name] / speed["timm"] if "timm" in speed else None,
                   vs_default=speed[name] / speed["default"] if "default" in speed else None,
                   load=[min(load), max(load)])
        rows.append(row)
        ratios = "  ".join(f"{key} {row[key]:.2f}x" for key in ("vs_timm", "vs_default") if row[key])
        print(f"{variant} b{batch_size} {method:<5} {name:<40} {speed[name]:>6.2f} img/s  {ratios}  "
              f"(load {min(load):.1f}-{max(load):.1f})", flush=True)
      del sides
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "cpu_levers"))
