"""LoRA on the fused qkv (Hu et al., 2022), as the study's code: one shared A (d -> r) and B (r -> 3d)."""
import dataclasses
from typing import ClassVar

import flax.linen as nn

from jpeft.peft import base

# torch.nn.Linear's default, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_LINEAR_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def check_rate(method: base.Method, field: str = "dropout") -> None:
  rate = getattr(method, field)
  method.require(field, isinstance(rate, (int, float)) and 0 <= rate < 1, "a dropout rate in [0, 1)")


def check_positive_int(method: base.Method, field: str) -> None:
  value = getattr(method, field)
  method.require(field, isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 "an integer >= 1")


@base.register
@dataclasses.dataclass(frozen=True)
class LoRA(base.Method):
  """qkv(z) + s * B(A(dropout(z))); s = merge_factor, no alpha / r factor.

  Parameters (in each block's attn): lora_a/kernel [D, r], lora_b/kernel [r, 3D].
  """
  name: ClassVar[str] = "lora"
  grid: ClassVar[dict] = {"rank": (1, 8, 16, 32)}
  mergeable: ClassVar[bool] = True
  rank: int = 8
  dropout: float = 0.1

  def validate(self):
    check_positive_int(self, "rank")
    check_rate(self)

  def dense(self, m, where, z, y, ctx):
    if where != "qkv":
      return y
    z = nn.Dropout(self.dropout)(z, ctx.deterministic)
    a = nn.Dense(self.rank, use_bias=False, name="lora_a", kernel_init=TORCH_LINEAR_INIT)(z)
    b = nn.Dense(y.shape[-1], use_bias=False, name="lora_b", kernel_init=nn.initializers.zeros)(a)
    return y + ctx.merge_factor * b

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for a_path in [p for p in flat if p.endswith("/lora_a/kernel")]:
      attn = a_path[:-len("/lora_a/kernel")]
      delta = flat.pop(a_path) @ flat.pop(f"{attn}/lora_b/kernel")
      flat[f"{attn}/qkv/kernel"] = flat[f"{attn}/qkv/kernel"] + merge_factor * delta
    return flat
