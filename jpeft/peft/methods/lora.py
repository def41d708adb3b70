"""LoRA on the fused qkv (Hu et al., 2022), as the study's code: one shared A (d -> r) and B (r -> 3d)."""
import dataclasses
from typing import ClassVar

import flax.linen as nn

from jpeft.peft import base
from jpeft.peft.methods.inits import TORCH_LINEAR, ZEROS


@base.register
@dataclasses.dataclass(frozen=True)
class LoRA(base.Method):
  """qkv(z) + s * B(A(dropout(z))); s = merge_factor, no alpha / r factor.

  Parameters (in each block's attn): lora_a/kernel [D, r], lora_b/kernel [r, 3D].
  """
  name: ClassVar[str] = "lora"
  grid: ClassVar[dict] = {"rank": (1, 8, 16, 32)}
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  rank: int = 8
  dropout: float = 0.1

  def validate(self):
    self.require_positive_int("rank")
    self.require_rate()

  def dense(self, m, where, z, y, ctx):
    if where != "qkv":
      return y
    z = nn.Dropout(self.dropout)(z, ctx.deterministic)
    a = nn.Dense(self.rank, use_bias=False, name="lora_a", kernel_init=TORCH_LINEAR)(z)
    b = nn.Dense(y.shape[-1], use_bias=False, name="lora_b", kernel_init=ZEROS)(a)
    return y + ctx.merge_factor * b

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for a_path in [p for p in flat if p.endswith("/lora_a/kernel")]:
      attn = a_path[:-len("/lora_a/kernel")]
      delta = flat.pop(a_path) @ flat.pop(f"{attn}/lora_b/kernel")
      flat[f"{attn}/qkv/kernel"] = flat[f"{attn}/qkv/kernel"] + merge_factor * delta
    return flat
