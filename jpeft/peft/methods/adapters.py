"""Bottleneck adapters: AdaptFormer, Houlsby adapter, Pfeiffer adapter, Convpass, RepAdapter.

Each is M(.) = Up(drop(act(Down .))) (Convpass adds a 3x3 conv in the bottleneck; RepAdapter is linear) with
output scale s, wired into the block as the spec's table says. Every module output is multiplied by
merge_factor * s. Parameters live in the block's scope as '<method>[_<sublayer>]_{down,up,conv,a,b}'.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

# Module import, not `from vit import quick_gelu`: vit imports jpeft.peft, so vit may be half-initialised here.
from jpeft.models import vit
from jpeft.peft import base
from jpeft.peft.methods.inits import TORCH_LINEAR, XAVIER, ZEROS


@dataclasses.dataclass(frozen=True)
class _Bottleneck(base.Method):
  """Hyperparameters shared by the bottleneck adapters: width b, output scale s, dropout in the bottleneck."""
  bottleneck: int = 8
  scale: float = 1.0
  dropout: float = 0.1
  # Initialisers of Down's kernel, Up's kernel and both biases; activation after Down.
  down_init: ClassVar[Callable] = staticmethod(XAVIER)
  up_init: ClassVar[Callable] = staticmethod(ZEROS)
  bias_init: ClassVar[Callable] = staticmethod(ZEROS)
  act: ClassVar[Callable] = staticmethod(nn.relu)

  def validate(self):
    self.require_positive_int("bottleneck")
    self.require_finite("scale")
    self.require_rate()

  def module(self, m, prefix: str, x, ctx, middle: Optional[Callable] = None):
    """merge_factor * s * Up(drop(middle(act(Down x)))): [..., D] -> [..., D]."""
    h = nn.Dense(self.bottleneck, dtype=m.dtype, kernel_init=self.down_init, bias_init=self.bias_init,
                 name=f"{prefix}_down")(x)
    h = self.act(h)
    if middle is not None:
      h = middle(h)
    h = nn.Dropout(self.dropout)(h, ctx.deterministic)
    y = nn.Dense(x.shape[-1], dtype=m.dtype, kernel_init=self.up_init, bias_init=self.bias_init,
                 name=f"{prefix}_up")(h)
    return (ctx.merge_factor * self.scale) * y


@base.register
@dataclasses.dataclass(frozen=True)
class AdaptFormer(_Bottleneck):
  """MLP sublayer, parallel, reading the pre-LN2 stream x (Chen et al., 2022): x + MLP(LN2 x) + M(x)."""
  name: ClassVar[str] = "adaptformer"
  grid: ClassVar[dict] = {"bottleneck": (4, 16, 32), "scale": (0.05, 0.1, 0.2)}
  down_init: ClassVar[Callable] = staticmethod(TORCH_LINEAR)
  bottleneck: int = 16
  scale: float = 0.1

  def parallel(self, m, where, x, z, ctx):
    return self.module(m, self.name, x, ctx) if where == "mlp" else None


@base.register
@dataclasses.dataclass(frozen=True)
class Adapter(_Bottleneck):
  """Houlsby adapter: sequential-after on both sublayers, h + M(h) (Houlsby et al., 2019)."""
  name: ClassVar[str] = "adapter"
  grid: ClassVar[dict] = {"bottleneck": (4, 8, 16, 32), "scale": (0.01, 0.1, 1, 10)}
  up_init: ClassVar[Callable] = staticmethod(XAVIER)
  bias_init: ClassVar[Callable] = staticmethod(nn.initializers.normal(1e-6))
  scale: float = 0.1

  def after_sublayer(self, m, where, h, ctx):
    return h + self.module(m, f"{self.name}_{where}", h, ctx)


@base.register
@dataclasses.dataclass(frozen=True)
class Pfeiffer(_Bottleneck):
  """Pfeiffer adapter: sequential-after on the MLP sublayer only, zero-initialised (Pfeiffer et al., 2021)."""
  name: ClassVar[str] = "pfeiffer"
  grid: ClassVar[dict] = {"bottleneck": (4, 8, 16, 32, 64), "scale": (0.01, 0.1, 1, 10)}

  def after_sublayer(self, m, where, h, ctx):
    return h + self.module(m, self.name, h, ctx) if where == "mlp" else h


def _identity_centre_tap(key, shape, dtype=jnp.float32):
  """A 3x3 conv kernel [3, 3, b, b] that is the identity: zero except the centre tap, eye(b)."""
  return jnp.zeros(shape, dtype).at[1, 1].set(jnp.eye(shape[2], shape[3], dtype=dtype))


@base.register
@dataclasses.dataclass(frozen=True)
class Convpass(_Bottleneck):
  """Parallel to both sublayers, reading the post-LN input (Jie and Deng, 2022):
  M(z) = s * Up(drop(QGELU(Conv3x3(QGELU(Down z))))). The conv runs on the patch grid; CLS and any inserted
  tokens in front of it go through the same conv as 1x1 images (only the centre tap reaches them).

  Attributes:
    conv_init: 'identity' (centre tap eye(b), as the Convpass code's default) or 'xavier'.
  """
  name: ClassVar[str] = "convpass"
  grid: ClassVar[dict] = {"scale": (0.01, 0.1, 1, 10, 100), "bottleneck": (8, 16),
                          "conv_init": ("identity", "xavier")}
  act: ClassVar[Callable] = staticmethod(lambda x: vit.quick_gelu(x))
  _CONV_INITS: ClassVar[dict] = {"identity": _identity_centre_tap, "xavier": XAVIER}
  scale: float = 10.0
  conv_init: str = "identity"

  def validate(self):
    super().validate()
    self.require("conv_init", self.conv_init in self._CONV_INITS, f"one of {sorted(self._CONV_INITS)}")

  def parallel(self, m, where, x, z, ctx):
    prefix = f"{self.name}_{where}"
    conv = nn.Conv(self.bottleneck, (3, 3), padding=1, dtype=m.dtype, bias_init=ZEROS,
                   kernel_init=self._CONV_INITS[self.conv_init], name=f"{prefix}_conv")
    front = ctx.num_prefix + 1  # inserted tokens + CLS

    def conv_on_grid(h):  # [B, T, b] -> [B, T, b]
      batch, tokens, width = h.shape
      grid_h, grid_w = ctx.grid
      if tokens - front != grid_h * grid_w:
        raise ValueError(f"Convpass expects {front} tokens before a {grid_h}x{grid_w} patch grid, got "
                         f"{tokens} tokens in all.")
      patches = conv(h[:, front:].reshape(batch, grid_h, grid_w, width)).reshape(batch, -1, width)
      singles = conv(h[:, :front].reshape(batch * front, 1, 1, width)).reshape(batch, front, width)
      return vit.quick_gelu(jnp.concatenate([singles, patches], axis=1))

    return self.module(m, prefix, z, ctx, middle=conv_on_grid)


@base.register
@dataclasses.dataclass(frozen=True)
class RepAdapter(_Bottleneck):
  """Sequential-before on both sublayers, linear so it folds into qkv / fc1 (Luo et al., 2023):
  z' = z + s * B(drop(A z)), A: D -> b, B: b -> D grouped (2 groups, kernel [2, b/2, D/2]).
  """
  name: ClassVar[str] = "repadapter"
  grid: ClassVar[dict] = {"bottleneck": (8, 16, 32), "scale": (0.1, 0.5, 1, 5, 10)}
  mergeable: ClassVar[bool] = True
  merge_order: ClassVar[int] = 1
  groups: ClassVar[int] = 2
  _FOLD_INTO: ClassVar[dict] = {"attn": "attn/qkv", "mlp": "mlp/fc1"}

  def validate(self):
    super().validate()
    self.require("bottleneck", self.bottleneck % self.groups == 0,
                 f"divisible by the {self.groups} groups of the up projection")

  def before_sublayer(self, m, where, z, ctx):
    prefix = f"{self.name}_{where}"
    width, groups = z.shape[-1], self.groups
    a = nn.Dense(self.bottleneck, dtype=m.dtype, kernel_init=XAVIER, name=f"{prefix}_a")(z)
    a = nn.Dropout(self.dropout)(a, ctx.deterministic)
    kernel = m.param(f"{prefix}_b_kernel", ZEROS, (groups, self.bottleneck // groups, width // groups))
    bias = m.param(f"{prefix}_b_bias", ZEROS, (width,))
    grouped = a.reshape(*a.shape[:-1], groups, self.bottleneck // groups)
    b = jnp.einsum("...gi,gio->...go", grouped, kernel.astype(a.dtype)).reshape(z.shape) + bias.astype(a.dtype)
    return z + (ctx.merge_factor * self.scale) * b

  def merge(self, flat, merge_factor=1.0):
    flat = dict(flat)
    c = merge_factor * self.scale
    for a_path in [p for p in flat if p.endswith("/kernel") and p.split("/")[-2].startswith(self.name + "_")]:
      module = a_path.split("/")[-2]
      scope = a_path[:-len(f"/{module}/kernel")]
      where = module[len(self.name) + 1:-len("_a")]
      ka, ba = flat.pop(a_path), flat.pop(f"{scope}/{module}/bias")
      kb = jax.scipy.linalg.block_diag(*flat.pop(f"{scope}/{self.name}_{where}_b_kernel"))  # [b, D]
      bb = flat.pop(f"{scope}/{self.name}_{where}_b_bias")
      # z' = z (I + c Ka Kb) + c (ba Kb + bb), and the next Dense computes z' W + b.
      target = f"{scope}/{self._FOLD_INTO[where]}"
      w = flat[f"{target}/kernel"]
      flat[f"{target}/kernel"] = w + c * ka @ (kb @ w)
      flat[f"{target}/bias"] = flat[f"{target}/bias"] + c * (ba @ kb + bb) @ w
    return flat
