"""FacT: factor-tuning (Jie and Deng, AAAI 2023). Weight deltas of qkv, proj, fc1, fc2 in every block are
factorised through bases shared by all blocks, U (D -> r) and V (r -> D), both bias-free:

  Delta(z) = merge_factor * s * V(drop(Sigma U z))      (Delta_q, _k, _v on the qkv input; Delta_o on proj's)

with a small core Sigma per weight. fc1's k*D output (k = mlp_dim / D, 4 for ViTs) is k chunks of V(.), from a
core r -> k*r; fc2's k*D input is split into k chunks of D, each through U, then a core k*r -> r.
  fact_tt: the cores are free per-block parameters (Sigma_q, _k, _v, _o [r, r], _fc1 [r, k r], _fc2 [k r, r]).
  fact_tk: the cores are slices of one tensor, Sigma_j = C x_3 P[:, j], with C [r, r, r] and P [r, slots]
    holding (4 + 2k) slots per block in the order q, k, v, o, fc1 x k, fc2 x k; the MLP cores interleave their
    k slots as the FacT authors' code does (see `FacTTK.slot_cores`).
Shared parameters live in the encoder ('encoder/fact_tt_u', ...); fact_tt's cores in the block's attn / mlp.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base
from jpeft.peft.methods.inits import TORCH_LINEAR, XAVIER, ZEROS

_ATTN_CORES = ("q", "k", "v", "o")


def delta(where: str, z, u, v, cores: dict, drop):
  """The unscaled weight delta's output for the Dense `where`, given its input z [..., in].

  u [D, r], v [r, D]; cores: 'q', 'k', 'v', 'o' [r, r], 'fc1' [r, k r], 'fc2' [k r, r]; drop: dropout fn.
  """
  if where == "qkv":
    return jnp.concatenate([drop(z @ u @ cores[name]) @ v for name in ("q", "k", "v")], axis=-1)
  if where == "proj":
    return drop(z @ u @ cores["o"]) @ v
  width, rank = u.shape
  if where == "fc1":
    h = drop(z @ u @ cores["fc1"])  # [..., k r]
    return (h.reshape(*h.shape[:-1], -1, rank) @ v).reshape(*h.shape[:-1], -1)
  chunks = z.reshape(*z.shape[:-1], -1, width) @ u  # fc2: [..., k, r]
  return drop(chunks.reshape(*z.shape[:-1], -1) @ cores["fc2"]) @ v


def weight_deltas(u, v, cores: dict) -> dict:
  """The same deltas as kernels [in, out], keyed by the Dense's path inside a block."""
  rank = u.shape[1]
  fc1 = cores["fc1"].reshape(rank, -1, rank)  # [r, k, r]: chunk j of the output is fc1[:, j]
  fc2 = cores["fc2"].reshape(-1, rank, rank)  # [k, r, r]: chunk j of the input is fc2[j]
  return {
      "attn/qkv": jnp.concatenate([u @ cores[name] @ v for name in ("q", "k", "v")], axis=1),
      "attn/proj": u @ cores["o"] @ v,
      "mlp/fc1": jnp.einsum("da,aji,io->djo", u, fc1, v).reshape(u.shape[0], -1),
      "mlp/fc2": jnp.einsum("di,jim,mo->jdo", u, fc2, v).reshape(-1, v.shape[1]),
  }


def _ratio(ctx) -> int:
  if ctx.mlp_dim % ctx.width:
    raise ValueError(f"FacT needs mlp_dim ({ctx.mlp_dim}) to be a multiple of the width ({ctx.width}).")
  return ctx.mlp_dim // ctx.width


@dataclasses.dataclass(frozen=True)
class _FacT(base.Method):
  """Shared bases U, V and the forward / merge rules; subclasses say where the cores come from."""
  mergeable: ClassVar[bool] = True
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  rank: int = 8
  scale: float = 1.0
  dropout: float = 0.1

  def validate(self):
    self.require_positive_int("rank")
    self.require_finite("scale")
    self.require_rate()

  def shared_params(self, m, ctx) -> dict:
    """Extra shared parameters beyond U and V."""
    return {}

  def shared(self, m, ctx):
    return dict(u=m.param(f"{self.name}_u", TORCH_LINEAR, (ctx.width, self.rank)),
                v=m.param(f"{self.name}_v", ZEROS, (self.rank, ctx.width)),
                **self.shared_params(m, ctx))

  def cores(self, m, where: str, ctx) -> dict:
    """The cores the Dense `where` of block ctx.layer needs (created in m's scope for fact_tt)."""
    raise NotImplementedError

  def dense(self, m, where, z, y, ctx):
    shared = ctx.shared[self.name]
    drop = lambda t: nn.Dropout(self.dropout)(t, ctx.deterministic)
    out = delta(where, z, shared["u"].astype(z.dtype), shared["v"].astype(z.dtype),
                {k: c.astype(z.dtype) for k, c in self.cores(m, where, ctx).items()}, drop)
    return y + (ctx.merge_factor * self.scale) * out

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    prefix = f"encoder/{self.name}_"
    shared = {p[len(prefix):]: flat.pop(p) for p in [p for p in flat if p.startswith(prefix)]}
    depth = len({p.split("/")[1] for p in flat if p.startswith("encoder/block_")})
    for layer in range(depth):
      block = f"encoder/block_{layer}"
      deltas = weight_deltas(shared["u"], shared["v"], self.block_cores(flat, shared, layer))
      for dense, d in deltas.items():
        flat[f"{block}/{dense}/kernel"] = flat[f"{block}/{dense}/kernel"] + merge_factor * self.scale * d
    return flat

  def block_cores(self, flat: dict, shared: dict, layer: int) -> dict:
    """All cores of block `layer` from trained parameters (removing per-block ones from `flat`)."""
    raise NotImplementedError


@base.register
@dataclasses.dataclass(frozen=True)
class FacTTT(_FacT):
  """FacT-TT: free per-block cores 'fact_tt_sigma_{q,k,v,o}' (attn scope) and '_{fc1,fc2}' (mlp scope)."""
  name: ClassVar[str] = "fact_tt"
  grid: ClassVar[dict] = {"rank": (8, 16, 32), "scale": (0.01, 0.1, 1, 10, 100)}

  def cores(self, m, where, ctx):
    r, k = self.rank, _ratio(ctx)
    shapes = {"qkv": {"q": (r, r), "k": (r, r), "v": (r, r)}, "proj": {"o": (r, r)},
              "fc1": {"fc1": (r, k * r)}, "fc2": {"fc2": (k * r, r)}}[where]
    # torch.nn.Linear's default init, as the FacT code's cores.
    return {name: m.param(f"{self.name}_sigma_{name}", TORCH_LINEAR, shape)
            for name, shape in shapes.items()}

  def block_cores(self, flat, shared, layer):
    block = f"encoder/block_{layer}"
    return {name: flat.pop(f"{block}/{'attn' if name in _ATTN_CORES else 'mlp'}/{self.name}_sigma_{name}")
            for name in _ATTN_CORES + ("fc1", "fc2")}


@base.register
@dataclasses.dataclass(frozen=True)
class FacTTK(_FacT):
  """FacT-TK: shared 'fact_tk_core' C [r, r, r] and 'fact_tk_p' P [r, (4 + 2k) * depth]."""
  name: ClassVar[str] = "fact_tk"
  grid: ClassVar[dict] = {"rank": (16, 32, 64), "scale": (0.01, 0.1, 1, 10, 100)}
  rank: int = 16

  def shared_params(self, m, ctx):
    r, slots = self.rank, 4 + 2 * _ratio(ctx)
    return dict(core=m.param(f"{self.name}_core", XAVIER, (r, r, r)),
                p=m.param(f"{self.name}_p", XAVIER, (r, slots * ctx.depth)))

  @staticmethod
  def slot_cores(core, p, layer: int, ratio: int) -> dict:
    """Cores of block `layer` from its 4 + 2k slots, Sigma_j = sum_c C[:, :, c] P[c, j] ([r, r] each).

    q, k, v, o are slots 0-3. The MLP cores follow the FacT authors' code (JieShibo/PETL-ViT,
    `FacT/fact_tk.py`, `fact_forward_mlp`; the study's `model/fact.py` ports it unchanged), where the k slots
    of fc1 are stacked last, [r, r, k], and reshaped row-major to [r, k r]: column b * k + j is column b of
    slot j, so the slots are interleaved across fc1's k output chunks rather than one slot per chunk. fc2's
    k slots are reshaped the same way and used transposed, [k r, r]. The spec's fact_tk row says the same.
    """
    slots = 4 + 2 * ratio
    sigma = jnp.einsum("abc,cj->abj", core, p[:, layer * slots:(layer + 1) * slots])  # [r, r, slots]
    rank = core.shape[0]
    return {"q": sigma[:, :, 0], "k": sigma[:, :, 1], "v": sigma[:, :, 2], "o": sigma[:, :, 3],
            "fc1": sigma[:, :, 4:4 + ratio].reshape(rank, ratio * rank),  # [r, k r]
            "fc2": sigma[:, :, 4 + ratio:].reshape(rank, ratio * rank).T}  # [k r, r]

  def cores(self, m, where, ctx):
    shared = ctx.shared[self.name]
    return self.slot_cores(shared["core"], shared["p"], ctx.layer, _ratio(ctx))

  def block_cores(self, flat, shared, layer):
    fc1 = flat[f"encoder/block_{layer}/mlp/fc1/kernel"]
    return self.slot_cores(shared["core"], shared["p"], layer, fc1.shape[1] // fc1.shape[0])
