"""Methods that change frozen Dense weights, W -> W + Delta(W, own parameters) (OFT, BOFT, LoHa, LoKr).

One rule, `delta`, serves both the forward pass (y + z @ Delta, the Dense's output plus the delta's) and the
merge (kernel + Delta), so merging is exact by construction. Parameters sit in the scope of the Attention / Mlp
module that holds the Dense, named '<method>_<site>_<field>' (e.g. encoder/block_0/attn/oft_qkv_r beside
encoder/block_0/attn/qkv/kernel).

Composition: the forward delta is computed from the pretrained kernel, the merge from the kernel as merged so far.
For methods whose delta depends on W (OFT, BOFT) the two agree when they come first in the method string
('oft+lora', 'boft+ssf'; `build_methods` refuses other orders); LoHa's and LoKr's deltas do not depend on W and compose in any order.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from jpeft.peft import base

SITES = ("qkv", "proj", "fc1", "fc2")


@dataclasses.dataclass(frozen=True)
class DenseDelta(base.Method):
  """Base of the weight-delta methods; subclasses define `create` (their parameters) and `delta` (the rule).

  Attributes:
    targets: the Dense layers of every block the method changes, a subset of ('qkv', 'proj', 'fc1', 'fc2').
  """
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR  # merge_factor 0 is the backbone
  targets: tuple[str, ...] = SITES

  def validate(self):
    self.require("targets", isinstance(self.targets, tuple) and len(self.targets) > 0 and
                 len(set(self.targets)) == len(self.targets) and set(self.targets) <= set(SITES),
                 f"a non-empty tuple of distinct Dense sites from {SITES}")

  def create(self, m, where: str, in_dim: int, out_dim: int) -> dict[str, Any]:
    """Creates the parameters for the Dense `where` ([in_dim] -> [out_dim]) in m's scope: {field: array}."""
    raise NotImplementedError

  def delta(self, p: dict[str, Any], kernel, merge_factor):
    """Delta [in, out] added to `kernel` [in, out] at `merge_factor` (0 gives zeros), from p = {field: array}."""
    raise NotImplementedError

  def site_param(self, m, where: str, field: str, init, shape):
    """m.param named "<method>_<where>_<field>"."""
    return m.param(f"{self.name}_{where}_{field}", init, shape)

  def dense(self, m, where, z, y, ctx):
    if where not in self.targets:
      return y
    kernel = base.dense_weights(m, where)["kernel"]
    p = self.create(m, where, *kernel.shape)
    return y + z @ self.delta(p, kernel, ctx.merge_factor).astype(z.dtype)

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    prefix = self.name + "_"
    sites: dict[tuple[str, str], dict[str, Any]] = {}  # (scope, site) -> {field: array}
    for path in list(flat):
      scope, _, leaf = path.rpartition("/")
      if leaf.startswith(prefix):
        site, field = leaf[len(prefix):].split("_", 1)
        sites.setdefault((scope, site), {})[field] = flat.pop(path)
    for (scope, site), p in sites.items():
      kernel = f"{scope}/{site}/kernel"
      flat[kernel] = flat[kernel] + self.delta(p, flat[kernel], merge_factor)
    return flat
