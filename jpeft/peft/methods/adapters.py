"""Bottleneck adapters: AdaptFormer, Houlsby adapter, Pfeiffer adapter, Convpass, RepAdapter.

Each is M(.) = Up(drop(act(Down .))) (Convpass adds a 3x3 conv in the bottleneck; RepAdapter is linear) with
output scale s, wired into the block as the spec's table says. Every module output is multiplied by
merge_factor * s. Parameters live in the block's scope as '<method>[_<sublayer>]_{down,up,conv,a,b,scale}'.
Adapter, Convpass and RepAdapter take their wiring as hyperparameters (`_Wired`), defaulting to the spec's.
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

SUBLAYERS = ("attn", "mlp")
# The spec's wirings of a module M into a sublayer Sub (x the residual stream, z = LN(x), h = Sub(z)):
#   parallel_pre_ln    x <- x + DP(Sub(z)) + DP(M(x))
#   parallel_post_ln   x <- x + DP(Sub(z)) + DP(M(z))
#   sequential_after   x <- x + DP(h + M(h))
#   sequential_before  x <- x + DP(Sub(z + M(z)))
#   post               x <- x + DP(Sub(z)); x <- x + M(x)   (Adapter+'s post-adapter, Steitz and Roth, 2024: M
#                      reads the stream after the sublayer's residual sum, and the next sublayer reads its output)
STYLES = ("parallel_pre_ln", "parallel_post_ln", "sequential_after", "sequential_before", "post")
LEARNABLE_SCALES = (False, True, "channel")


@dataclasses.dataclass(frozen=True)
class _Bottleneck(base.Method):
  """Hyperparameters shared by the bottleneck adapters: width b, output scale s, dropout in the bottleneck."""
  bottleneck: int = 8
  scale: float = 1.0
  dropout: float = 0.1
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  # Initialisers of Down's kernel, Up's kernel and both biases; activation after Down.
  down_init: ClassVar[Callable] = staticmethod(XAVIER)
  up_init: ClassVar[Callable] = staticmethod(ZEROS)
  bias_init: ClassVar[Callable] = staticmethod(ZEROS)
  act: ClassVar[Callable] = staticmethod(nn.relu)

  def validate(self):
    self.require_positive_int("bottleneck")
    self.require_finite("scale")
    self.require_rate()

  def paddable(self):
    # A zero Down column with zero bias gives act(0) = 0 (ReLU, GELU and QuickGELU all vanish at 0; Convpass's
    # conv maps zero channels to zero with zero kernel slices), a zero Up row adds nothing, and the gradients of
    # both vanish (each goes through the other). Not with dropout in the bottleneck: its mask is drawn at the
    # bottleneck's shape, so the padded trial would draw another mask.
    return ("bottleneck",) if self.dropout == 0 else ()

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
    return self.output_scale(m, prefix, ctx, x.shape[-1]) * y

  def output_scale(self, m, prefix: str, ctx, width: int):
    """What the module `prefix`'s output (width `width`) is multiplied by: merge_factor * s."""
    return ctx.merge_factor * self.scale


@dataclasses.dataclass(frozen=True)
class _Wired(_Bottleneck):
  """A module whose wiring is a hyperparameter, as the study's code allows for its adapter-type modules (its
  ft_{attn,mlp}_module, _mode, _ln and adapter_scaler options). Subclasses default to their published wiring
  and define `output`, the module's output M(.) with every scale applied.

  Attributes:
    sublayers: the sublayers that get a module (one each), any of 'attn', 'mlp'.
    style: one of STYLES (see the top of this file).
    learnable_scale: also multiply M's output by a learnable '<method>_<sublayer>_scale' initialised to 1:
      True, a scalar (the study's adapter_scaler='learnable_scalar' is this with scale = 1); 'channel', a
      vector [D], one gain per output channel (Adapter+'s channel-wise scaling); False, none.
  """
  sublayers: tuple[str, ...] = SUBLAYERS
  style: str = "sequential_after"
  learnable_scale: bool | str = False

  def validate(self):
    super().validate()
    self.require("sublayers", isinstance(self.sublayers, tuple) and len(self.sublayers) > 0 and
                 len(set(self.sublayers)) == len(self.sublayers) and set(self.sublayers) <= set(SUBLAYERS),
                 f"a non-empty tuple of distinct names from {list(SUBLAYERS)}, e.g. ('mlp',)")
    self.require("style", self.style in STYLES, f"one of {list(STYLES)}")
    self.require("learnable_scale", any(self.learnable_scale is v or (isinstance(v, str) and self.learnable_scale == v)
                                        for v in LEARNABLE_SCALES), "True (a scalar), 'channel' or False")

  def output_scale(self, m, prefix, ctx, width):
    factor = super().output_scale(m, prefix, ctx, width)
    if self.learnable_scale is not False:
      # One more factor of the output, so `scale` still only multiplies M's output: the sweep's folding of
      # `scale` into the traced merge_factor (jpeft/sweep/grid.py, FOLDABLE) stays exact, as the forward pass
      # and every gradient depend on merge_factor * scale alone.
      shape = (width,) if self.learnable_scale == "channel" else ()
      factor = factor * m.param(f"{prefix}_scale", nn.initializers.ones, shape)
    return factor

  def output(self, m, where: str, x, ctx):
    """M(x) for the module of sublayer `where`, scales applied: [B, T, D] -> [B, T, D]."""
    raise NotImplementedError

  def _wired(self, where: str, style: str) -> bool:
    return self.style == style and where in self.sublayers

  def before_sublayer(self, m, where, z, ctx):
    return z + self.output(m, where, z, ctx) if self._wired(where, "sequential_before") else z

  def after_sublayer(self, m, where, h, ctx):
    return h + self.output(m, where, h, ctx) if self._wired(where, "sequential_after") else h

  def after_residual(self, m, where, x, ctx):
    return x + self.output(m, where, x, ctx) if self._wired(where, "post") else x

  def parallel(self, m, where, x, z, ctx):
    if self._wired(where, "parallel_pre_ln"):
      return self.output(m, where, x, ctx)
    if self._wired(where, "parallel_post_ln"):
      return self.output(m, where, z, ctx)
    return None


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


# Houlsby et al.'s initialisation as Adapter+'s code draws it: N(0, 0.01^2) truncated at +-2 std, biases zero.
# (jax's truncated_normal scales a standard normal truncated to [-2, 2] by 0.01: torch's trunc_normal_(std=0.01,
# a=-0.02, b=0.02).)
HOULSBY = nn.initializers.truncated_normal(0.01, lower=-2.0, upper=2.0)
_ADAPTER_INITS = {"study": (XAVIER, XAVIER, nn.initializers.normal(1e-6)), "houlsby": (HOULSBY, HOULSBY, ZEROS)}
_ACTS = {"relu": nn.relu, "gelu": lambda x: nn.gelu(x, approximate=False)}


@base.register
@dataclasses.dataclass(frozen=True)
class Adapter(_Wired):
  """Houlsby adapter: by default sequential-after on both sublayers, h + M(h) (Houlsby et al., 2019).

  Attributes (beyond `_Wired`'s):
    init: 'study' (the study's code: Xavier kernels, biases N(0, 1e-12)) or 'houlsby' (kernels N(0, 0.01^2)
      truncated at +-2 std, biases 0, as Adapter+'s code).
    nonlinearity: the bottleneck's activation, 'relu' (the study's) or 'gelu' (exact, Adapter+'s).
    drop_path: stochastic depth on the module's output, one Bernoulli per example (Adapter+'s 0.1; at rate p
      the kept output is scaled by 1 / (1 - p), as timm's DropPath).
  Adapter+ (Steitz and Roth, CVPR 2024) is style='post', sublayers=('mlp',), learnable_scale='channel',
  scale=1, init='houlsby', nonlinearity='gelu', dropout=0, drop_path=0.1 (configs/vtab_adapter_plus.py).
  """
  name: ClassVar[str] = "adapter"
  grid: ClassVar[dict] = {"bottleneck": (4, 8, 16, 32), "scale": (0.01, 0.1, 1, 10)}
  scale: float = 0.1
  init: str = "study"
  nonlinearity: str = "relu"
  drop_path: float = 0.0

  def validate(self):
    super().validate()
    self.require("init", self.init in _ADAPTER_INITS, f"one of {sorted(_ADAPTER_INITS)}")
    self.require("nonlinearity", self.nonlinearity in _ACTS, f"one of {sorted(_ACTS)}")
    self.require_rate("drop_path")

  @property
  def down_init(self):
    return _ADAPTER_INITS[self.init][0]

  @property
  def up_init(self):
    return _ADAPTER_INITS[self.init][1]

  @property
  def bias_init(self):
    return _ADAPTER_INITS[self.init][2]

  @property
  def act(self):
    return _ACTS[self.nonlinearity]

  def output(self, m, where, x, ctx):
    out = self.module(m, f"{self.name}_{where}", x, ctx)
    if self.drop_path == 0:
      return out
    return nn.Dropout(self.drop_path, broadcast_dims=tuple(range(1, out.ndim)))(out, ctx.deterministic)


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
class Convpass(_Wired):
  """By default parallel to both sublayers, reading the post-LN input (Jie and Deng, 2022):
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
  style: str = "parallel_post_ln"
  conv_init: str = "identity"

  def validate(self):
    super().validate()
    self.require("conv_init", self.conv_init in self._CONV_INITS, f"one of {sorted(self._CONV_INITS)}")

  def output(self, m, where, x, ctx):
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

    return self.module(m, prefix, x, ctx, middle=conv_on_grid)


@base.register
@dataclasses.dataclass(frozen=True)
class RepAdapter(_Wired):
  """By default sequential-before on both sublayers, linear so it folds into qkv / fc1 (Luo et al., 2023):
  z' = z + s * B(drop(A z)), A: D -> b, B: b -> D grouped (2 groups, kernel [2, b/2, D/2]).

  Re-parameterisable in the sequential styles: sequential_before folds into the sublayer's first Dense
  (qkv / fc1), sequential_after into its last (proj / fc2), whose output it rewrites; `merge` refuses the
  parallel styles, whose branch no plain-ViT weight holds.
  """
  name: ClassVar[str] = "repadapter"
  grid: ClassVar[dict] = {"bottleneck": (8, 16, 32), "scale": (0.1, 0.5, 1, 5, 10)}
  mergeable: ClassVar[bool] = True
  merge_order: ClassVar[int] = 1
  groups: ClassVar[int] = 2
  _FOLD_INTO: ClassVar[dict] = {"sequential_before": {"attn": "attn/qkv", "mlp": "mlp/fc1"},
                                "sequential_after": {"attn": "attn/proj", "mlp": "mlp/fc2"}}
  style: str = "sequential_before"

  def paddable(self):
    return ()  # the grouped Up kernel [2, b/2, D/2] splits the bottleneck in halves: padding at its end would not

  def validate(self):
    super().validate()
    self.require("bottleneck", self.bottleneck % self.groups == 0,
                 f"divisible by the {self.groups} groups of the up projection")

  def output(self, m, where, x, ctx):
    prefix = f"{self.name}_{where}"
    width, groups = x.shape[-1], self.groups
    a = nn.Dense(self.bottleneck, dtype=m.dtype, kernel_init=XAVIER, name=f"{prefix}_a")(x)
    a = nn.Dropout(self.dropout)(a, ctx.deterministic)
    kernel = m.param(f"{prefix}_b_kernel", ZEROS, (groups, self.bottleneck // groups, width // groups))
    bias = m.param(f"{prefix}_b_bias", ZEROS, (width,))
    grouped = a.reshape(*a.shape[:-1], groups, self.bottleneck // groups)
    b = jnp.einsum("...gi,gio->...go", grouped, kernel.astype(a.dtype)).reshape(x.shape) + bias.astype(a.dtype)
    return self.output_scale(m, prefix, ctx, width) * b

  def merge(self, flat, merge_factor=1.0):
    if self.style not in self._FOLD_INTO:
      raise ValueError(
          f"PEFT method 'repadapter' with style={self.style!r} is not re-parameterisable: a parallel module "
          "adds a branch of its own to the residual stream, which no plain-ViT weight holds. Only the "
          f"sequential styles merge ({sorted(self._FOLD_INTO)}); keep the unmerged model, or train with "
          "--config.peft.repadapter.style=sequential_before.")
    flat = dict(flat)
    for where in SUBLAYERS:
      for a_kernel in [p for p in flat if p.endswith(f"/{self.name}_{where}_a/kernel")]:
        scope, prefix = a_kernel[:-len(f"/{self.name}_{where}_a/kernel")], f"{self.name}_{where}"
        ka, ba = flat.pop(a_kernel), flat.pop(f"{scope}/{prefix}_a/bias")
        kb = jax.scipy.linalg.block_diag(*flat.pop(f"{scope}/{prefix}_b_kernel"))  # [b, D]
        bb = flat.pop(f"{scope}/{prefix}_b_bias")
        if self.learnable_scale is not False:  # a scalar or one gain per output channel: scales Kb's columns
          gain = flat.pop(f"{scope}/{prefix}_scale")
          kb, bb = kb * gain, bb * gain
        c = merge_factor * self.scale
        # t + M(t) = t P + q with P = I + c Ka Kb, q = c (ba Kb + bb), for the Dense (W, b) it folds into:
        # before, the Dense reads t P + q (W <- P W, b <- b + q W); after, its output y gives y P + q
        # (W <- W P, b <- b P + q).
        q = c * (ba @ kb + bb)
        target = f"{scope}/{self._FOLD_INTO[self.style][where]}"
        w, bias = flat[f"{target}/kernel"], flat[f"{target}/bias"]
        if self.style == "sequential_before":
          flat[f"{target}/kernel"] = w + c * ka @ (kb @ w)
          flat[f"{target}/bias"] = bias + q @ w
        else:
          flat[f"{target}/kernel"] = w + c * (w @ ka) @ kb
          flat[f"{target}/bias"] = bias + c * (bias @ ka) @ kb + q
    return flat
