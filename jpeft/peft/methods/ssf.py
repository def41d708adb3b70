"""SSF: scale and shift deep features (Lian et al., 2022): y = gamma * z + beta at every feature site."""
import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base


def _normal_around_one(key, shape, dtype=jnp.float32):
  """gamma ~ N(1, 0.02), the parameter being gamma itself (so merging reads it directly)."""
  return 1 + nn.initializers.normal(0.02)(key, shape, dtype)


@base.register
@dataclasses.dataclass(frozen=True)
class SSF(base.Method):
  """y = gamma * z + beta after the patch embedding, LN1, LN2, qkv, proj, fc1 (before GELU), fc2, final LN.

  Parameters 'ssf_<site>_scale' and 'ssf_<site>_shift' [width of the site] sit in the scope of the module
  whose output they modify (site: embed, ln1, ln2, final, qkv, proj, fc1, fc2). With merge_factor s the
  module adds s * ((gamma - 1) * z + beta), so s = 1 is SSF and s = 0 the pretrained model.
  """
  name: ClassVar[str] = "ssf"
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR

  def _apply(self, m, site, y, ctx):
    width = y.shape[-1]
    gamma = m.param(f"ssf_{site}_scale", _normal_around_one, (width,))
    beta = m.param(f"ssf_{site}_shift", nn.initializers.normal(0.02), (width,))
    return y + ctx.merge_factor * ((gamma - 1) * y + beta).astype(y.dtype)

  def embed(self, m, x, ctx):
    return self._apply(m, "embed", x, ctx)

  def norm(self, m, where, y, ctx):
    return self._apply(m, where, y, ctx)

  def dense(self, m, where, z, y, ctx):
    return self._apply(m, where, y, ctx)

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    # site -> (plain module relative to the parameter's scope, param scaled like a kernel's output columns)
    module = {"embed": "embedding", "ln1": "ln1", "ln2": "ln2", "final": "norm", "qkv": "qkv",
              "proj": "proj", "fc1": "fc1", "fc2": "fc2"}
    for scale_path in [p for p in flat if p.endswith("_scale") and p.rsplit("/", 1)[-1].startswith("ssf_")]:
      scope, leaf = scale_path.rsplit("/", 1) if "/" in scale_path else ("", scale_path)
      site = leaf[len("ssf_"):-len("_scale")]
      gamma = 1 + merge_factor * (flat.pop(scale_path) - 1)
      beta = merge_factor * flat.pop(scale_path[:-len("_scale")] + "_shift")
      target = "/".join(filter(None, [scope, module[site]]))
      weight = "kernel" if f"{target}/kernel" in flat else "scale"
      flat[f"{target}/{weight}"] = flat[f"{target}/{weight}"] * gamma
      if site == "embed":
        # The patch embedding may have no bias (CLIP); the position embedding is added to the patch tokens
        # right after, so the shift folds there (row 0 is CLS, which the embedding does not produce).
        if f"{target}/bias" in flat:
          flat[f"{target}/bias"] = flat[f"{target}/bias"] * gamma
        flat["pos_embedding"] = jnp.asarray(flat["pos_embedding"]).at[:, 1:].add(beta)
      else:
        flat[f"{target}/bias"] = flat[f"{target}/bias"] * gamma + beta
    return flat

