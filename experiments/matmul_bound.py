"""The train step's matmul-bound limit, per framework, from its own matmul shapes (issue 13).

  python experiments/matmul_bound.py                          # ViT-S/16 b8 and b32, ViT-B/16 b8; lora and full
  python experiments/matmul_bound.py --cases=S/16:8 --methods=lora --repeats=5 --out=/tmp/bound.json

A ViT train step is 88-97% matmul FLOPs. This lists every matmul the step computes (forward; backward input
and weight gradients where the method needs them; attention's q.k and weights.v and their four backward
products) with its shape, times each distinct shape alone in XLA (jit of one jnp.matmul) and in torch (one
`@`), interleaved, on this machine's threads, and sums count x time: the step's time if everything but the
matmuls were free, at the speed each framework reaches on these shapes (a 2048^3 product is no measure: on this
CPU it ran slower than the step's own matmuls). It also checks the list: its FLOPs against timm's count
(`torch.utils.flop_counter.FlopCounterMode` on forward + backward, which does not count the fused CPU
attention kernel, so the list's attention FLOPs are added to it) and XLA's count of jpeft's lowered step.
Each shape's time is the best of --repeats runs (the machine may be shared; see the printed load).
"""
import collections
import json
import os
import time

import bench_vs_timm  # first: imports torch before JAX (see there)
from bench_vs_timm import torch
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jpeft import cli
from jpeft.models import vit

# --cases, --methods and --out are bench_vs_timm's flags (it defines them on import).
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs of each shape per framework (the best counts).")
FLAGS = flags.FLAGS

Matmul = collections.namedtuple("Matmul", "name batch m k n count")  # count products [batch,] [m, k] x [k, n]


def step_matmuls(variant: str, batch_size: int, method: str, image_size: int = 224, num_classes: int = 100,
                 rank: int = bench_vs_timm.LORA_RANK) -> list[Matmul]:
  """Every matmul of one ViT train step (bench_vs_timm's step: LoRA on qkv + head, or full fine-tuning)."""
  dims = vit.decode_variant(variant)
  d, mlp, heads, depth, patch = dims["width"], dims["mlp_dim"], dims["num_heads"], dims["depth"], dims["patch_size"]
  patches = (image_size // patch) ** 2
  tokens, hd = patches + 1, d // heads
  n = batch_size * tokens
  dense = [("qkv", d, 3 * d), ("proj", d, d), ("fc1", d, mlp), ("fc2", mlp, d)]
  out = []
  for name, i, o in dense:
    out.append(Matmul(f"{name} fwd", 1, n, i, o, depth))
    # input gradient: every block's in full; with LoRA none below block 0's first LoRA (its qkv input)
    out.append(Matmul(f"{name} dX", 1, n, o, i, depth if method == "full" or name != "qkv" else depth - 1))
    if method == "full":
      out.append(Matmul(f"{name} dW", 1, i, n, o, depth))
  if method == "lora":
    for name, i, o in (("lora_a", d, rank), ("lora_b", rank, 3 * d)):
      out += [Matmul(f"{name} fwd", 1, n, i, o, depth), Matmul(f"{name} dW", 1, i, n, o, depth)]
      out.append(Matmul(f"{name} dX", 1, n, o, i, depth - (name == "lora_a")))
  # attention per block: fwd q.k^T, w.v; bwd dw = do.v^T, dv = w^T.do, dq = ds.k, dk = ds^T.q
  bh = batch_size * heads
  out += [Matmul("attn q.k fwd/d(w)", bh, tokens, hd, tokens, 2 * depth),
          Matmul("attn w.v fwd, dv, dq, dk", bh, tokens, tokens, hd, 4 * depth)]
  # patch embedding (a conv = [B * patches, 3 p^2] x [3 p^2, D]), its weight gradient in full; the head
  out.append(Matmul("patch embed fwd", 1, batch_size * patches, 3 * patch * patch, d, 1))
  if method == "full":
    out.append(Matmul("patch embed dW", 1, 3 * patch * patch, batch_size * patches, d, 1))
  out += [Matmul("head fwd", 1, batch_size, d, num_classes, 1), Matmul("head dX", 1, batch_size, num_classes, d, 1),
          Matmul("head dW", 1, d, batch_size, num_classes, 1)]
  return out


def flops(mm: Matmul) -> float:
  return 2.0 * mm.batch * mm.m * mm.k * mm.n * mm.count


def _operands(mm: Matmul):
  rng = np.random.default_rng(0)
  lead = (mm.batch,) if mm.batch > 1 else ()
  return (rng.uniform(-1, 1, lead + (mm.m, mm.k)).astype(np.float32),
          rng.uniform(-1, 1, lead + (mm.k, mm.n)).astype(np.float32))


def time_shapes(shapes, repeats: int) -> dict:
  """{(batch, m, k, n): {"xla": seconds, "torch": seconds}}: the best of `repeats` runs, the two interleaved.

  The best, not the median: a bound asks how fast each framework can run the shape, and on a shared machine
  other processes only ever slow a run down.
  """
  xla_matmul = jax.jit(jnp.matmul)
  result = {}
  for shape in shapes:
    a, b = _operands(Matmul("", *shape, 1))
    ja, jb = jax.device_put(a), jax.device_put(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    runs = {"xla": lambda: xla_matmul(ja, jb).block_until_ready(), "torch": lambda: ta @ tb}
    times = {"xla": [], "torch": []}
    for i in range(repeats + 1):
      for name, run in runs.items():
        start = time.perf_counter()
        run()
        if i:  # the first run compiles (XLA) and warms caches
          times[name].append(time.perf_counter() - start)
    result[shape] = {name: min(t) for name, t in times.items()}
  return result


def bound_seconds(mms: list[Matmul], repeats: int) -> tuple[dict, dict]:
  """({"xla": s, "torch": s}: the step's matmul-bound seconds per framework, {shape: time_shapes' times})."""
  times = time_shapes(sorted({(m.batch, m.m, m.k, m.n) for m in mms}), repeats)
  return {side: sum(m.count * times[(m.batch, m.m, m.k, m.n)][side] for m in mms) for side in ("xla", "torch")}, times


def timm_flops(variant: str, method: str, batch_size: int) -> float:
  """timm's forward + backward FLOPs by torch's FlopCounterMode (no fused attention kernel counted)."""
  from torch.utils import flop_counter  # pylint: disable=g-import-not-at-top (torch is optional)
  side = bench_vs_timm.TimmStep(variant, method, batch_size, "float32")
  with flop_counter.FlopCounterMode(display=False) as counter:
    torch.nn.functional.cross_entropy(side.model(side.images), side.labels).backward()
  return float(counter.get_total_flops())


def main(argv) -> None:
  del argv
  if torch is None:
    raise SystemExit(f"matmul_bound needs torch and timm ({bench_vs_timm.TORCH_LINE}).")
  print(f"jax {jax.__version__}, {bench_vs_timm.TORCH_LINE}; torch threads {torch.get_num_threads()}; "
        f"load {os.getloadavg()}", flush=True)
  square = time_shapes([(1, 2048, 2048, 2048)], _REPEATS.value)[(1, 2048, 2048, 2048)]
  print("for reference, a 2048^3 product: " + ", ".join(f"{side} {2 * 2048 ** 3 / t / 1e9:.0f} GFLOP/s"
                                                         for side, t in square.items()))
  rows = []
  for case in FLAGS.cases:
    variant, batch_size = case.split(":")[0], int(case.split(":")[1])
    for method in FLAGS.methods:
      mms = step_matmuls(variant, batch_size, method)
      bound, times = bound_seconds(mms, _REPEATS.value)
      listed = sum(flops(m) for m in mms)
      attention = sum(flops(m) for m in mms if m.name.startswith("attn"))
      xla = bench_vs_timm.jpeft_loop(variant, method, batch_size, "float32").gflops_per_image * batch_size * 1e9
      timm = timm_flops(variant, method, batch_size) + attention
      shapes = [dict(name=m.name, shape=[m.batch, m.m, m.k, m.n], count=m.count,
                     **{f"{side}_gflops_per_s": 2 * m.batch * m.m * m.k * m.n / times[(m.batch, m.m, m.k, m.n)][side]
                        / 1e9 for side in ("xla", "torch")}) for m in mms]
      rows.append(dict(variant=variant, batch_size=batch_size, method=method, listed_gflop=listed / 1e9,
                       timm_counter_plus_attention_gflop=timm / 1e9, xla_gflop=xla / 1e9,
                       matmul_bound_s=bound, matmul_gflops_per_s={s: listed / t / 1e9 for s, t in bound.items()},
                       shapes=shapes, load=os.getloadavg()))
      print(f"\n{variant} b{batch_size} {method}: GFLOP listed {listed / 1e9:.1f}, timm counter + attention "
            f"{timm / 1e9:.1f}, XLA {xla / 1e9:.1f}; matmul-bound XLA {bound['xla'] * 1e3:.0f} ms "
            f"({listed / bound['xla'] / 1e9:.0f} GFLOP/s), torch {bound['torch'] * 1e3:.0f} ms "
            f"({listed / bound['torch'] / 1e9:.0f} GFLOP/s); load {os.getloadavg()[0]:.1f}")
      print(f"  {'matmul':<26} {'[batch, m, k, n]':<24} {'count':>5} {'XLA GFLOP/s':>12} {'torch GFLOP/s':>14}")
      for s in shapes:
        print(f"  {s['name']:<26} {str(s['shape']):<24} {s['count']:>5} {s['xla_gflops_per_s']:>12.0f} "
              f"{s['torch_gflops_per_s']:>14.0f}", flush=True)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "matmul_bound"))
