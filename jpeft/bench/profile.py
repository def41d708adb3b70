"""Where a compiled train step spends its time: seconds per op kind, from a JAX profiler trace.

  python -m jpeft.bench.profile --config=configs/vtab_lora.py --config.model.variant=S/16 \\
      --config.optim.batch_size=8 --out=/tmp/profile.json

Runs `config`'s train step (random weights, a synthetic batch, as `jpeft.bench.step`) under `jax.profiler.trace`,
sums the trace's per-HLO-op durations and sorts each top-level op of the optimized HLO into a kind by what it
computes (`classify_hlo`): matmul (dense layers, patch embedding), attention (its two batched matmuls and the
softmax), LayerNorm, GELU, dropout (random bits and masks), transposes/copies, optimizer update (with the
finite check), other. On CPU the thunk runtime
runs independent ops on several threads at once, so the ops' seconds can add up to more than the step's wall
time; both are reported. `experiments/profile_vs_timm.py` puts timm's profile beside it.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile

import jax

from jpeft.bench import measure

KINDS = ("matmul", "attention", "LayerNorm", "GELU", "dropout", "transposes/copies", "optimizer update", "other")

# Opcodes that only move or view data (and `fusion`, the wrapper of what it calls).
_MOVES = {"fusion", "copy", "transpose", "bitcast", "reshape", "broadcast", "concatenate", "slice", "pad", "dynamic-slice",
          "dynamic-update-slice", "parameter", "constant", "tuple", "get-tuple-element", "reverse", "iota",
          "convert", "copy-start", "copy-done"}
_RNG = {"rng-bit-generator", "shift-right-logical", "shift-left", "xor"}  # threefry's bit mixing
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?\s([a-z][\w\-]*)\((.*)$")
_HEADER = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")


def parse_hlo(text: str) -> tuple[str, dict]:
  """Optimized HLO text -> (entry computation name, {computation: [(name, opcode, called, op_name, line)]})."""
  computations, entry, current = {}, None, None
  for line in text.splitlines():
    header = _HEADER.match(line)
    if header and " = " not in line.split("{")[0]:
      current = header.group(1)
      computations[current] = []
      if line.startswith("ENTRY"):
        entry = current
      continue
    match = _INSTRUCTION.match(line) if current else None
    if match:
      name, opcode, rest = match.groups()
      called = _CALLS.findall(rest)
      for branches in _BRANCHES.findall(rest):
        called += [b.strip().lstrip("%") for b in branches.split(",")]
      op_name = re.search(r'op_name="([^"]*)"', rest)
      computations[current].append((name, opcode, called, op_name.group(1) if op_name else "", rest))
  return entry, computations


def _opcodes(computations: dict, name: str, seen=None) -> tuple[set, list]:
  """Opcodes and (opcode, line) of dots in computation `name` and everything it calls."""
  seen = set() if seen is None else seen
  if name in seen or name not in computations:
    return set(), []
  seen.add(name)
  opcodes, dots = set(), []
  for _, opcode, called, _, rest in computations[name]:
    opcodes.add(opcode)
    if opcode in ("dot", "convolution"):
      dots.append((opcode, rest))
    for callee in called:
      more, more_dots = _opcodes(computations, callee, seen)
      opcodes |= more
      dots += more_dots
  return opcodes, dots


def kind_of(opcodes: set, dots: list, op_name: str) -> str:
  """The op kind (one of KINDS) of an op computing `opcodes` (with `dots`), traced from jax `op_name`.

  XLA expands erf and fuses freely, so the jax op it came from (its name stack: module path, primitive)
  decides where the opcodes alone cannot.
  """
  where = op_name.lower()
  if dots:
    # Attention's q.k and weights.v are dots with batch dimensions (batch, heads); dense layers have none.
    batched = any("lhs_batch_dims={" in rest and "lhs_batch_dims={}" not in rest for _, rest in dots)
    return "attention" if batched else "matmul"
  if opcodes & _RNG or re.search(r"dropout|bernoulli|threefry|random_bits", where):
    return "dropout"
  if opcodes <= _MOVES:
    return "transposes/copies"
  if "jvp(" not in where:  # outside the differentiated loss: AdamW, the finite check, keeping the last good state
    return "optimizer update"
  if "/attn/" in where and re.search(r"reduce|exp|div|sub", where + " ".join(opcodes)):
    return "attention"
  if "/mlp/" in where:  # the MLP's only elementwise work besides its dots: the activation (and its gradient)
    return "GELU"
  if "rsqrt" in opcodes or re.search(r"/(ln1|ln2|norm|ln_pre)/|layernorm", where):
    return "LayerNorm"
  return "other"


def classify_hlo(text: str) -> dict[str, str]:
  """{name of each top-level op of the entry computation: its kind}, from optimized HLO text."""
  entry, computations = parse_hlo(text)
  kinds = {}
  for name, opcode, called, op_name, rest in computations.get(entry, []):
    opcodes, dots = {opcode}, [(opcode, rest)] if opcode in ("dot", "convolution") else []
    for callee in called:
      more, more_dots = _opcodes(computations, callee)
      opcodes |= more
      dots += more_dots
    kinds[name] = kind_of(opcodes, dots, op_name)
  return kinds


def trace_op_seconds(run, steps: int) -> dict[str, float]:
  """Runs `run(steps)` under the JAX profiler; returns {HLO op name: seconds per step} of the ops it ran."""
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      run(steps)
    path, = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  seconds = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and "hlo_op" in event.get("args", {}):
      seconds[event["args"]["hlo_op"]] += event["dur"] * 1e-6 / steps
  return dict(seconds)


def profile_loop(loop, steps: int = 3) -> dict:
  """Op-kind profile of a `jpeft.bench.measure.TrainLoop` (compiled, warmed up by the caller).

  Returns dict(step_s=<median wall seconds per step>, op_s=<ops' seconds per step, summed over threads>,
  kinds={kind: seconds per step}, top_ops=[[op, kind, seconds per step], ...] (the 15 slowest),
  flops=<XLA's FLOPs per step>).
  """
  kinds_of_ops = classify_hlo(loop.compiled.as_text())
  step_s = statistics.median(loop.run(steps))
  per_op = trace_op_seconds(loop.run, steps)
  kinds = {kind: 0.0 for kind in KINDS}
  for name, seconds in per_op.items():
    if name in kinds_of_ops:  # top-level ops only: a while loop's body ops are inside its own event
      kinds[kinds_of_ops[name]] += seconds
  top = sorted((name for name in per_op if name in kinds_of_ops), key=lambda name: -per_op[name])[:15]
  return dict(step_s=step_s, op_s=sum(kinds.values()), kinds=kinds,
              top_ops=[[name, kinds_of_ops[name], per_op[name]] for name in top],
              flops=loop.gflops_per_image * loop.batch_size * 1e9)


def main(argv) -> None:
  del argv
  loop = measure.TrainLoop(_CONFIG.value)
  loop.run(2)  # warmup: first runs allocate
  result = profile_loop(loop, _STEPS.value)
  print(loop.summary)
  print(f"{'kind':<20} {'ms/step':>8} {'share':>6}")
  for kind, seconds in result["kinds"].items():
    print(f"{kind:<20} {seconds * 1e3:>8.1f} {seconds / result['op_s']:>6.1%}")
  print(f"{'ops (sum)':<20} {result['op_s'] * 1e3:>8.1f}\n{'step (wall)':<20} {result['step_s'] * 1e3:>8.1f}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(dict(summary=loop.summary, **result), f, indent=1)


if __name__ == "__main__":  # flags only here: experiments/profile_vs_timm.py imports this module beside its own
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags
  from jpeft import cli
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (as for jpeft.main).", lock_config=True)
  _STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps (after 2 warmup steps).")
  _OUT = flags.DEFINE_string("out", None, "Also write the profile as JSON to this file.")
  flags.mark_flags_as_required(["config"])
  cli.run_program(main, "jpeft.bench.profile")
