"""Ways of writing ViT attention in pure JAX, timed alone (forward + backward) on this machine (issue 13).

  python experiments/attention_variants.py --variant=S/16 --batch_size=32 --repeats=5

One layer's attention at the train step's shape ([B, 197, heads, head_dim] q, k, v; float32), value and input
gradients of each variant against `softmax` (jpeft's: einsum q.k, jax.nn.softmax, einsum weights.v):
  deferred_norm  exp(logits - max) . v, divided by the row sums after the product (one pass less over the
                 [B, H, T, T] logits), with a custom VJP using flash attention's rowsum(dO * O) (one more less)
  per_example    softmax attention mapped over the batch (lax.map): one example's logits fit the L2 cache
  query_blocks   softmax attention mapped over 4 blocks of 50 queries (each row's softmax whole)
  jax_dpa        jax.nn.dot_product_attention (XLA's implementation on CPU)
Prints each variant's median and best milliseconds and its largest absolute difference from `softmax`.
"""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jpeft import cli
from jpeft.models import vit

_VARIANT = flags.DEFINE_string("variant", "S/16", "ViT variant (its heads and width).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per variant (interleaved), after one warmup run.")
_OUT = flags.DEFINE_string("out", None, "Also write the timings as JSON to this file.")
TOKENS, QUERY_BLOCK = 197, 50


def softmax(q, k, v):
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


@jax.custom_vjp
def deferred_norm(q, k, v):
  return _deferred_fwd(q, k, v)[0]


def _deferred_fwd(q, k, v):
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k / np.sqrt(q.shape[-1]))
  p = jnp.exp(logits - jax.lax.stop_gradient(logits.max(-1, keepdims=True)))
  s = p.sum(-1).transpose(0, 2, 1)[..., None]  # [B, T, H, 1]
  o = jnp.einsum("bhqk,bkhd->bqhd", p, v) / s
  return o, (q, k, v, p, s, o)


def _deferred_bwd(res, do):
  q, k, v, p, s, o = res
  dos = do / s
  dv = jnp.einsum("bhqk,bqhd->bkhd", p, dos)
  rowsum = (dos * o).sum(-1).transpose(0, 2, 1)[..., None]  # [B, H, T, 1]: flash attention's D / s
  dlogits = p * (jnp.einsum("bqhd,bkhd->bhqk", dos, v) - rowsum) / np.sqrt(q.shape[-1])
  return jnp.einsum("bhqk,bkhd->bqhd", dlogits, k), jnp.einsum("bhqk,bqhd->bkhd", dlogits, q), dv


deferred_norm.defvjp(_deferred_fwd, _deferred_bwd)


def per_example(q, k, v):
  return jax.lax.map(lambda x: softmax(*(t[None] for t in x))[0], (q, k, v))


def query_blocks(q, k, v):
  batch, tokens, heads, head_dim = q.shape
  padded = jnp.pad(q, ((0, 0), (0, -tokens % QUERY_BLOCK), (0, 0), (0, 0)))
  blocks = padded.reshape(batch, -1, QUERY_BLOCK, heads, head_dim).transpose(1, 0, 2, 3, 4)
  out = jax.lax.map(lambda block: softmax(block, k, v), blocks)
  return out.transpose(1, 0, 2, 3, 4).reshape(batch, -1, heads, head_dim)[:, :tokens]


VARIANTS = {"softmax": softmax, "deferred_norm": deferred_norm, "per_example": per_example,
            "query_blocks": query_blocks, "jax_dpa": jax.nn.dot_product_attention}


def main(argv) -> None:
  del argv
  dims = vit.decode_variant(_VARIANT.value)
  shape = (_BATCH.value, TOKENS, dims["num_heads"], dims["width"] // dims["num_heads"])
  rng = np.random.default_rng(0)
  q, k, v, do = (jnp.asarray(rng.normal(size=shape).astype(np.float32)) for _ in range(4))
  steps = {name: jax.jit(lambda q, k, v, do, f=f: (f(q, k, v),) + jax.vjp(f, q, k, v)[1](do))
           for name, f in VARIANTS.items()}
  outs = {name: step(q, k, v, do) for name, step in steps.items()}
  times = {name: [] for name in steps}
  for _ in range(_REPEATS.value):
    for name, step in steps.items():
      start = time.perf_counter()
      jax.block_until_ready(step(q, k, v, do))
      times[name].append(time.perf_counter() - start)
  print(f"{_VARIANT.value} batch {_BATCH.value}, q/k/v {list(shape)}, one layer forward + backward; "
        f"load {os.getloadavg()}")
  rows = []
  for name in steps:
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(outs[name], outs["softmax"]))
    ms = float(np.median(times[name])) * 1e3
    rows.append(dict(variant=name, median_ms=ms, best_ms=min(times[name]) * 1e3,
                     speed_vs_softmax=float(np.median(times["softmax"])) * 1e3 / ms, max_abs_diff=diff))
    print(f"{name:<14} {ms:>7.1f} ms (best {rows[-1]['best_ms']:.1f})  {rows[-1]['speed_vs_softmax']:.2f}x  "
          f"max |diff| {diff:.1e}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(dict(shape=shape, load=os.getloadavg(), rows=rows), f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=lambda argv: cli.parse_flags_or_exit(argv, "attention_variants"))
