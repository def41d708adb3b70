"""(IA)^3: infused adapter by inhibiting and amplifying inner activations (Liu et al., NeurIPS 2022).

Where, as the paper and the PyTorch PEFT library on a transformer with separate projections (peft's mapping
for BERT-like models: target_modules=['key', 'value', 'output.dense'], feedforward_modules=['output.dense']):
the keys and values are scaled per channel, and so is the MLP's hidden activation (the input of fc2):

  k' = l_k * k,  v' = l_v * v   (the k and v parts of the fused qkv output, bias included)
  fc2(l_ff * act(fc1(z)))

On a timm ViT, peft's `IA3Config(target_modules=['qkv', 'fc2'], feedforward_modules=['fc2'])` scales the whole
fused qkv output, queries too. That adds D parameters per block but no function: q and k meet only in the
per-channel products q_i k_i, so l_q * l_k is one scale that l_k alone expresses. This module keeps the paper's
keys and values; it equals peft on the fused qkv with peft's query scales at 1 (what the tests check).
Scales start at 1 (identity). With merge_factor s each scale is 1 + s * (l - 1); merging multiplies the k, v
output columns of the qkv kernel and bias, and fc2's input rows (its bias stays), as peft's `merge_and_unload`.
Both folds come after the other methods' rules on Dense outputs (merge_order 1), so in a composition that also
changes the qkv output (IA)^3 comes last, as its fold assumes (`build_methods` refuses other orders).

Parameters: attn/ia3_kv_scale [2 D] (keys then values, the order of the fused output), mlp/ia3_ff_scale [mlp_dim].
"""
import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base


@base.register
@dataclasses.dataclass(frozen=True)
class IA3(base.Method):
  """Learned per-channel scales of keys, values and the MLP's hidden activation (see module doc)."""
  name: ClassVar[str] = "ia3"
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  # The fc2 scale rewrites a Dense's input, so it folds after the rules on Dense outputs (see base.Method).
  merge_order: ClassVar[int] = 1
  composition_position: ClassVar[str] = "last"

  def _scale(self, m, name, size, ctx):
    scale = m.param(name, nn.initializers.ones, (size,))
    return 1 + ctx.merge_factor * (scale - 1)

  def dense(self, m, where, z, y, ctx):
    if where != "qkv":
      return y
    width = y.shape[-1] // 3
    scale = self._scale(m, "ia3_kv_scale", 2 * width, ctx).astype(y.dtype)
    return jnp.concatenate([y[..., :width], y[..., width:] * scale], axis=-1)

  def activation(self, m, a, ctx):
    return a * self._scale(m, "ia3_ff_scale", a.shape[-1], ctx).astype(a.dtype)

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    for path in [p for p in flat if p.endswith("/ia3_kv_scale")]:
      attn = path[:-len("/ia3_kv_scale")]
      scale = 1 + merge_factor * (flat.pop(path) - 1)
      width = scale.shape[0] // 2
      scale = jnp.concatenate([jnp.ones((width,), scale.dtype), scale])
      flat[f"{attn}/qkv/kernel"] = flat[f"{attn}/qkv/kernel"] * scale
      flat[f"{attn}/qkv/bias"] = flat[f"{attn}/qkv/bias"] * scale
    for path in [p for p in flat if p.endswith("/ia3_ff_scale")]:
      mlp = path[:-len("/ia3_ff_scale")]
      scale = 1 + merge_factor * (flat.pop(path) - 1)
      flat[f"{mlp}/fc2/kernel"] = flat[f"{mlp}/fc2/kernel"] * scale[:, None]
    return flat
