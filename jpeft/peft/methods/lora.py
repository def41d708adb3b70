"""LoRA on the fused qkv (Hu et al., 2022), as the study's code, with the PyTorch PEFT library's popular options.

One A (d -> r) and B (r -> 3d) per block, on qkv only (the study's placement):

  y = z W + b + mf * s * (dropout(z) A B - z A0 B0)      A [D, r], B [r, 3D]; mf = merge_factor

`scaling` picks s: 'study' s = 1 (the study's code, no alpha / r), 'alpha_over_r' s = alpha / r (peft's default),
'rslora' s = alpha / sqrt(r) (rank-stabilised LoRA, Kalajdzievski 2023; peft's `use_rslora=True`).

`init` picks the start (peft's `init_lora_weights`):
  'study'     A torch-Linear (kaiming-uniform, a = sqrt(5)), B = 0 (peft's default, `True`); A0 B0 = 0.
  'gaussian'  A ~ N(0, 1 / r^2), B = 0 (peft's 'gaussian'); A0 B0 = 0.
  'pissa'     A, B start at the principal part of the pretrained W (Meng et al., 2024): with W = U S V^T (jpeft's
              kernel layout [in, out]), A0 = U_r sqrt(S_r / s), B0 = sqrt(S_r / s) V_r^T (peft's
              `_pissa_decomposition`, transposed).
  'olora'     A, B start at the QR factors of W (Buyukakyuz, 2024): with W^T = Q R (torch's [out, in] weight),
              A0 = R_r^T, B0 = Q_r^T (peft's `olora_init`, transposed).
peft moves the principal part out of the frozen weight, W_res = W - s A0 B0, and trains A, B from A0, B0. jpeft
initialises methods before it loads the pretrained weights and never changes a frozen weight, so it keeps W,
stores A0 and B0 as frozen parameters derived from the loaded W (`from_backbone`, which `model_setup.build`
calls after loading; any rebuild of the frozen weights recomputes them), and trains the offsets
`lora_a` = A - A0, `lora_b` = B - B0, zero at the start: the model at step 0 is the backbone, and the offsets
have A's and B's gradients (as DoRA's magnitude offset; weight decay pulls A towards A0 instead of 0).
The subtracted term z A0 B0 sees the undropped input, as peft's residual weight does.

LoRA+ (Hayou et al., 2024): the B factors carry their own group label, `peft_b`, so `--config.optim.lr_mult.peft_b=16`
trains B at 16 times the learning rate of A (1 by default: plain LoRA).

Merge: W + mf * s * (A B - A0 B0), peft's `merge_and_unload` (on W_res) at mf = 1.

Parameters (in each block's attn): lora_a/kernel [D, r], lora_b/kernel [r, 3D] (trainable; the offsets from A0, B0
for 'pissa' and 'olora'); for 'pissa' and 'olora' also lora_principal_a [D, r], lora_principal_b [r, 3D] (frozen).
"""
import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jpeft.peft import base
from jpeft.peft.methods.inits import TORCH_LINEAR, ZEROS

SCALINGS = ("study", "alpha_over_r", "rslora")
INITS = ("study", "gaussian", "pissa", "olora")
PRINCIPAL = ("lora_principal_a", "lora_principal_b")


def principal_factors(kernel, rank: int, scale: float, init: str):
  """kernel [in, out] -> (A0 [in, rank], B0 [rank, out]) with scale * A0 B0 the part 'pissa' or 'olora' moves."""
  kernel = jnp.asarray(kernel, jnp.float32)
  if init == "pissa":
    u, s, vt = jnp.linalg.svd(kernel, full_matrices=False)
    root = jnp.sqrt(s[:rank] / scale)
    return u[:, :rank] * root, root[:, None] * vt[:rank]
  q, r = jnp.linalg.qr(kernel.T)  # torch's weight [out, in] = Q R, as peft factorises it
  return r[:rank].T, q[:, :rank].T


@base.register
@dataclasses.dataclass(frozen=True)
class LoRA(base.Method):
  """qkv(z) + mf * s * (B(A(dropout(z))) - z A0 B0) (see module doc for s, A0, B0)."""
  name: ClassVar[str] = "lora"
  grid: ClassVar[dict] = {"rank": (1, 8, 16, 32)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  rank: int = 8
  dropout: float = 0.1
  scaling: str = "study"
  alpha: float = 8.0  # peft's default lora_alpha; read by scaling 'alpha_over_r' and 'rslora' only
  init: str = "study"

  def validate(self):
    self.require_positive_int("rank")
    self.require_rate()
    self.require("scaling", self.scaling in SCALINGS, f"one of {SCALINGS}")
    self.require("alpha", isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0,
                 "a positive finite number")
    self.require("init", self.init in INITS, f"one of {INITS}")

  @property
  def scale(self) -> float:
    """s: 1 ('study'), alpha / r ('alpha_over_r') or alpha / sqrt(r) ('rslora')."""
    return {"study": 1.0, "alpha_over_r": self.alpha / self.rank,
            "rslora": self.alpha / math.sqrt(self.rank)}[self.scaling]

  @property
  def principal(self) -> bool:
    return self.init in ("pissa", "olora")

  def label(self, path):
    if path[-1] in PRINCIPAL:
      return base.FROZEN  # derived from the frozen W: frozen, even under 'full'
    if "lora_b" in path:
      return base.PEFT_B  # LoRA+'s fast factor
    return super().label(path)

  def paddable(self):
    # Zero columns of A and rows of B add nothing and get zero gradients (each factor's gradient goes through the
    # other); dropout acts on z, whose shape the rank does not change. PiSSA / OLoRA are not padded: their frozen
    # principal factors depend on the rank, and frozen weights are shared by all trials of a program.
    return () if self.principal else ("rank",)

  def pad_multiplier(self, padded):
    return self.scale / padded.scale  # alpha / r reads the real rank, not the padded one

  def _a_init(self):
    if self.init == "gaussian":
      return nn.initializers.normal(1.0 / self.rank)
    return ZEROS if self.principal else TORCH_LINEAR

  def dense(self, m, where, z, y, ctx):
    if where != "qkv":
      return y
    dropped = nn.Dropout(self.dropout)(z, ctx.deterministic)
    if not self.principal:
      a = nn.Dense(self.rank, use_bias=False, name="lora_a", kernel_init=self._a_init())(dropped)
      b = nn.Dense(y.shape[-1], use_bias=False, name="lora_b", kernel_init=ZEROS)(a)
      return y + ctx.merge_factor * self.scale * b
    kernel = base.dense_weights(m, where)["kernel"]
    factors = lambda i: lambda _: principal_factors(kernel, self.rank, self.scale, self.init)[i]  # init only
    a0, b0 = m.param(PRINCIPAL[0], factors(0)), m.param(PRINCIPAL[1], factors(1))
    da = m.param("lora_a", lambda key: {"kernel": ZEROS(key, a0.shape)})["kernel"]
    db = m.param("lora_b", lambda key: {"kernel": ZEROS(key, b0.shape)})["kernel"]
    dt = y.dtype
    trained = (dropped @ (a0 + da).astype(dt)) @ (b0 + db).astype(dt)
    return y + ctx.merge_factor * self.scale * (trained - (z @ a0.astype(dt)) @ b0.astype(dt))

  def from_backbone(self, flat):
    if not self.principal:
      return flat
    flat = dict(flat)
    for a0_path in [p for p in flat if p.endswith("/lora_principal_a")]:
      attn = a0_path[:-len("/lora_principal_a")]
      flat[a0_path], flat[f"{attn}/lora_principal_b"] = jax.jit(
          principal_factors, static_argnums=(1, 2, 3))(flat[f"{attn}/qkv/kernel"], self.rank, self.scale, self.init)
    return flat

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for a_path in [p for p in flat if p.endswith("/lora_a/kernel")]:
      attn = a_path[:-len("/lora_a/kernel")]
      a, b = flat.pop(a_path), flat.pop(f"{attn}/lora_b/kernel")
      delta = a @ b
      if self.principal:
        a0, b0 = flat.pop(f"{attn}/lora_principal_a"), flat.pop(f"{attn}/lora_principal_b")
        delta = (a0 + a) @ (b0 + b) - a0 @ b0
      flat[f"{attn}/qkv/kernel"] = flat[f"{attn}/qkv/kernel"] + merge_factor * self.scale * delta
    return flat
