"""LoRA on the fused qkv (Hu et al., 2022), as the study's code: one shared A (d -> r) and B (r -> 3d)."""
import dataclasses
from typing import ClassVar

import flax.linen as nn

from jpeft.peft import base


@base.register
@dataclasses.dataclass(frozen=True)
class LoRA(base.Method):
  """qkv(z) + s * B(A(dropout(z))); s = merge_factor, no alpha / r factor."""
  name: ClassVar[str] = "lora"
  grid: ClassVar[dict] = {"lora_rank": (1, 8, 16, 32)}
  mergeable: ClassVar[bool] = True
  lora_rank: int = 8
  dropout: float = 0.1

  def dense(self, m, where, z, y, ctx):
    if where != "qkv":
      return y
    z = nn.Dropout(self.dropout)(z, ctx.deterministic)
    # kaiming_uniform(a=sqrt(5)) as torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    a = nn.Dense(self.lora_rank, use_bias=False, name="lora_a",
                 kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"))(z)
    b = nn.Dense(y.shape[-1], use_bias=False, name="lora_b", kernel_init=nn.initializers.zeros)(a)
    return y + ctx.merge_factor * b
