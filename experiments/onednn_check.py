"""Can jpeft's programs compile their matmuls to oneDNN on this CPU and jaxlib? (issue 13's last lever)

  python experiments/onednn_check.py

XLA:CPU can hand dots to oneDNN (`xla_cpu_use_onednn` with `xla_cpu_experimental_onednn_fusion_type=dot`):
1.2x jpeft's train step on a 2-core Sapphire Rapids (`experiments/cpu_levers.py`, lever `onednn` below). Each
case here compiles one program with those options in a child process, since a failing one kills its process
(jaxlib 0.10.2: "partition compile failed", then SIGILL), and compares it with the default program. Once every
case prints `ok`, the options can become a config field of jpeft's runs.

`ok` means the oneDNN program's result is within TOLERANCE of the default program's (relative to the largest
value): fp32 matmuls in a different summation order differ by about 1e-7 to 1e-6 of that. `WRONG` means more: on
CPUs without AVX-512 (oneDNN's `gemm:jit:f32` matmul; try `ONEDNN_MAX_CPU_ISA=AVX2` on any x86-64 CPU) jaxlib
0.10.2's oneDNN computes a dot followed by a multiply, `(x @ w) * c`, as `(x @ w) ** 2` (case "dense * scale").
"""
import subprocess
import sys

# Largest |oneDNN - default| / max |default| that is rounding (fp32, another summation order), not a wrong program.
TOLERANCE = 1e-4
ONEDNN = {"xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
# cpu_levers.py's lever for the same options.
LEVER = "+".join(f"{key}={value}" for key, value in ONEDNN.items())

_CASES = {  # name -> (what it computes, code defining fn and args)
    "dense": ("x @ w + b, one of the ViT's dense layers",
              "x, w, b = rand(1576, 384), rand(384, 1152), rand(1152); fn = lambda x, w, b: x @ w + b; args = (x, w, b)"),
    "dense * scale": ("(x @ w) * 0.125, as attention's or LoRA's scale",
                      "x, w = rand(68, 32), rand(32, 96); fn = lambda x, w: (x @ w) * 0.125; args = (x, w)"),
    "attention logits": ("q.k * scale, batched over examples and heads",
                         "q = rand(8, 197, 6, 64); fn = lambda q: jnp.einsum('bqhd,bkhd->bhqk', q, q) * 0.125; "
                         "args = (q,)"),
    "attention output": ("softmax(q.k) . v",
                         "q = rand(8, 197, 6, 64); fn = lambda q: jnp.einsum('bhqk,bkhd->bqhd', "
                         "jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, q) * 0.125, -1), q); args = (q,)"),
    "ViT eval forward": ("jpeft's tiny ViT (mu/8), inference",
                         "from jpeft.models import vit; model = vit.create_model('mu/8', num_classes=5); "
                         "x = rand(4, 32, 32, 3); p = model.init(jax.random.PRNGKey(0), x[:1])['params']; "
                         "fn = lambda p, x: model.apply({'params': p}, x); args = (p, x)"),
    "ViT gradients": ("the same ViT's parameter gradients (as training)",
                      "from jpeft.models import vit; model = vit.create_model('mu/8', num_classes=5); "
                      "x = rand(4, 32, 32, 3); p = model.init(jax.random.PRNGKey(0), x[:1])['params']; "
                      # moved off the zero-initialised head (whose gradients would all be zero) and LoRA-like zeros
                      "p = jax.tree.map(lambda v: v + 0.1 * rand(*v.shape), p); "
                      "loss = lambda p, x: jnp.sum(model.apply({'params': p}, x) ** 2); "
                      "fn = lambda p, x: jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.grad(loss)(p, x))]); "
                      "args = (p, x)"),
}

_CHILD = """
import jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
rand = lambda *shape: jnp.asarray(rng.uniform(-1, 1, shape), jnp.float32)
{code}
compiled = jax.jit(fn, compiler_options={options!r}).lower(*args).compile()
fused = compiled.as_text().count('__onednn_fusion')
expected = jax.jit(fn)(*args)
error = float(jnp.abs(compiled(*args) - expected).max() / jnp.abs(expected).max())
verdict = 'ok' if error <= {tolerance} else 'WRONG'
print(f'{{verdict}}: {{fused}} oneDNN fusions, max |difference| to the default program {{error:.1e}} of its '
      'largest value')
"""


def check(code: str) -> str:
  """Runs one case in a child process; its last line ('ok: ...' or 'WRONG: ...'), or how it died ('FAILED ...')."""
  child = subprocess.run([sys.executable, "-c", _CHILD.format(code=code, options=ONEDNN, tolerance=TOLERANCE)],
                         capture_output=True, text=True)
  if child.returncode == 0:
    return child.stdout.strip().splitlines()[-1]
  said = " | ".join(line for line in child.stderr.splitlines() if "compile failed" in line or "Error" in line)
  return f"FAILED (exit code {child.returncode}{'; ' + said if said else ''})"


def main() -> None:
  import jax  # only for the version line: the cases run in children
  print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__}; XLA options {ONEDNN}")
  for name, (what, code) in _CASES.items():
    print(f"{name:<18} {what:<50} {check(code)}", flush=True)
  print(f"Speed: python experiments/cpu_levers.py --levers=default,{LEVER}")


if __name__ == "__main__":
  main()
