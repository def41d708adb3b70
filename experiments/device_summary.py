"""Writes <dir>/summary.md from what experiments/device_check.sh left in <dir> (device.json, mfu.json,
attention_*.json, protocol.json): one short page with the three tables, for the README's performance section.

  python experiments/device_summary.py experiments/results/<device>
"""
import glob
import json
import os
import sys


def _load(path: str):
  with open(path) as f:
    return json.load(f)


def _step_rows(rows: list) -> list[str]:
  lines = ["| variant | method | dtype | attention | batch | images/s | TFLOP/s | MFU | step MB |",
           "|---|---|---|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    mfu = "n/a" if r["mfu"] != r["mfu"] else f"{r['mfu']:.1%}"  # NaN without a known peak
    lines.append(f"| {r['variant']} | {r['method']} | {r['dtype']} | {r.get('attention', 'einsum')} | "
                 f"{r['batch_size']} | {r['images_per_s']:.1f} | {r['tflops']:.1f} | {mfu} | "
                 f"{r['program_mem_mb']:,.0f} |")
  return lines


def _protocol(result: dict) -> list[str]:
  grid = result["grid"]
  lines = [f"{result['variant']} at {result['image_size']} px, {result['dtype']}, {result['method']}, "
           f"{result['epochs']} epochs, lr {grid['lr']} x wd {grid['wd']}, final seeds {grid['final_seeds']}, "
           f"data {result.get('data', 'task')} ({result['task']}); sweep side --trial_batch={result['trial_batch']}.",
           "", "| side | tune s | final s | total s | of which compile s | selected | test accuracy |",
           "|---|---:|---:|---:|---:|---|---:|"]
  for side, r in result["sides"].items():
    compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
    lines.append(f"| {side} | {r['tune_s']:.1f} | {r['final_s']:.1f} | {r['total_s']:.1f} | {compile_s} | "
                 f"{json.dumps(r['selected'])} | {r['test_accuracy']:.3f} |")
  sweep = result["sides"]["sweep"]["total_s"]
  lines.append("")
  for side, r in result["sides"].items():
    if side != "sweep":
      lines.append(f"- {side} / sweep, total: {r['total_s'] / sweep:.2f}x (above 1: the sweep is faster)")
  if "torch" not in result["sides"]:
    lines.append("- the PyTorch loop: not run (torch and timm not importable by the script's Python)")
  return lines


def summary(folder: str) -> str:
  device = _load(os.path.join(folder, "device.json"))
  lines = [f"# Device check: {device['device_kind']}", "",
           f"`bash experiments/device_check.sh` on {device['devices']}x {device['device_kind']} "
           f"({device['backend']}), jax {device['jax']}, {device['date']}"
           + (" (DEVICE_CHECK_TINY: CPU-sized smoke run, figures meaningless)" if device.get("tiny") else "")
           + f"; wall {device.get('wall_s', 0):.0f} s.", ""]
  if os.path.exists(os.path.join(folder, "mfu.json")):
    lines += ["## Train step (MFU)", "", *_step_rows(_load(os.path.join(folder, "mfu.json"))), ""]
  attention = [r for path in sorted(glob.glob(os.path.join(folder, "attention_*.json"))) for r in _load(path)]
  failed = device.get("failed", [])
  failed_attention = [name[len("attention_"):] for name in failed if name.startswith("attention_")]
  if attention or failed_attention:
    lines += ["## Attention implementations (model.attention), train step", ""]
    lines += _step_rows(attention) if attention else []
    lines += [f"- {name}: failed here (its error is in `device_check.log`)" for name in failed_attention]
    lines.append("")
  if os.path.exists(os.path.join(folder, "protocol.json")):
    lines += ["## The tuning protocol: jpeft sweep, jpeft trial by trial, the PyTorch loop", "",
              *_protocol(_load(os.path.join(folder, "protocol.json"))), ""]
  elif "protocol" in failed:
    lines += ["## The tuning protocol", "", "Failed here (its output is in `device_check.log`).", ""]
  if "mfu" in failed:
    lines += ["The MFU table failed here (its output is in `device_check.log`).", ""]
  return "\n".join(lines)


def main() -> None:
  if len(sys.argv) != 2:
    sys.exit("usage: python experiments/device_summary.py <results folder>")
  text = summary(sys.argv[1])
  with open(os.path.join(sys.argv[1], "summary.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
