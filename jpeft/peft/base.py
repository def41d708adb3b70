"""The contract between the ViT and a PEFT method.

A method is a frozen dataclass of hyperparameters that the ViT calls at fixed insertion points. Every hook
is an identity by default, so a method overrides only the points it uses. Hooks receive the calling linen
module `m` and create their parameters in its scope (`m.param(...)` or a submodule built inside the hook),
so a method's parameters live next to the weights they modify, e.g.
`encoder/block_3/attn/lora_a/kernel` beside `encoder/block_3/attn/qkv/kernel`.

Insertion points (see `jpeft/models/vit.py`):
  embed            patch-embedding output, [B, N, D] (before CLS and position embeddings)
  norm             a LayerNorm output: where in {'ln1', 'ln2', 'final'}, [B, T, D]
  dense            a Dense output: where in {'qkv', 'proj', 'fc1', 'fc2'}, with its input z and output y; the
                   Dense's own weights are `dense_weights(m, where)` (DoRA's column norm reads the kernel)
  activation       the MLP's hidden activation a = act(fc1(z)) [B, T, mlp_dim] -> the input of fc2 ((IA)^3)
  before_sublayer  z = LN(x) -> z' fed to the sublayer (sequential-before adapters); where in {'attn', 'mlp'}
  after_sublayer   sublayer output h -> h' (sequential-after adapters, residual gammas), before drop path
  after_residual   the residual stream after a sublayer's residual sum, x + DP(h) (+ parallel branches) -> x'
                   (Adapter+'s post-adapter, which reads and adds to the stream after the MLP's sum)
  parallel         an extra residual branch computed from (x, z), added through its own drop path
  tokens           extra tokens inserted before a block (prompts, query tokens)
  pool             the pooled feature and the collected outputs of query tokens -> final feature
A `dense` hook may read the frozen Dense's weights through `dense_weights` (methods that rewrite a weight,
e.g. OFT's rotation of W, need W itself, not only its output).
The `shared` hook creates parameters once per encoder (shared across blocks, e.g. FacT's U and V); what it
returns is handed to every block hook as `ctx.shared[method.name]`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Optional

import jax


@dataclasses.dataclass(frozen=True)
class Context:
  """What a hook may need to know about where it is called.

  Attributes:
    layer: index of the encoder block (None outside blocks).
    depth: number of blocks.
    width: token width D.
    mlp_dim: hidden width of the MLP.
    num_heads: attention heads.
    merge_factor: runtime scalar multiplying every inserted module's output (WiSE-FT knob).
    deterministic: True at evaluation (no dropout).
    num_prefix: number of inserted tokens in front of CLS at this point (token order [inserted, CLS, patches]).
    grid: (h, w) of the patch grid.
    patch_size: side of a square patch in pixels (VPT's prompt initialisation depends on it).
    shared: dict method name -> whatever the method's `shared` hook returned.
  """
  layer: Optional[int]
  depth: int
  width: int
  mlp_dim: int
  num_heads: int
  merge_factor: Any
  deterministic: bool
  num_prefix: int = 0
  grid: tuple[int, int] = (0, 0)
  patch_size: int = 16
  shared: Any = None

  def replace(self, **kw) -> "Context":
    return dataclasses.replace(self, **kw)


# A pytree, so that a block under nn.remat (jax.checkpoint) can take it: the arrays it may carry are data, the
# rest (ints, the deterministic flag, the grid) stays static.
_CONTEXT_DATA = ("merge_factor", "shared")
jax.tree_util.register_dataclass(
    Context, data_fields=list(_CONTEXT_DATA),
    meta_fields=[f.name for f in dataclasses.fields(Context) if f.name not in _CONTEXT_DATA])


@dataclasses.dataclass(frozen=True)
class TokenGroup:
  """Tokens a method inserts before a block.

  Attributes:
    name: unique name (used to collect outputs).
    tokens: [B, n, D].
    remove_after: index of the block after which the tokens are removed again.
    as_keys: whether other tokens may attend to them (False for VQT's query tokens).
    collect: whether their output (after removal) is handed to the method's `pool` hook.
  """
  name: str
  tokens: Any
  remove_after: int
  as_keys: bool = True
  collect: bool = False


WISE_INTERPOLATE = "interpolate"
WISE_MERGE_FACTOR = "merge_factor"


def dense_weights(m, where: str) -> dict[str, Any]:
  """{'kernel' [in, out], 'bias' [out]} of the Dense `where` that the `dense` hook called with module `m` follows
  (the Dense has run by then, so its parameters exist at initialisation too)."""
  return m.variables["params"][where]


# Trainable groups. Each maps to its own learning-rate multiplier in the optimizer; FROZEN gets nothing.
FROZEN = "frozen"
HEAD = "head"
PEFT = "peft"
# The B (up) factors of LoRA: their own group so that LoRA+ (Hayou et al., 2024) can train them faster
# (`config.optim.lr_mult.peft_b`); counted with the method's parameters in every other respect.
PEFT_B = "peft_b"
BACKBONE = "backbone"


@dataclasses.dataclass(frozen=True)
class Method:
  """Base class of PEFT methods: identity at every insertion point, nothing trainable but the head.

  Subclasses set `name`, declare hyperparameters as dataclass fields (checked in `validate`), override the
  hooks they need, `label` for the parameters they make trainable, `merge` when re-parameterisable, and `grid`
  with the spec's hyperparameter grid (field name -> tuple of values). Parameters a method inserts are named
  with the prefix '<name>_' (e.g. 'lora_a', 'ssf_qkv_scale'), which is what the default `label` keys on.
  """
  name: ClassVar[str] = "base"
  grid: ClassVar[dict[str, tuple]] = {}
  mergeable: ClassVar[bool] = False
  # Folding order when several methods merge (stable, so equal orders fold in the list's order, the order
  # their hooks run in): rules on Dense outputs (0) fold before rules that rewrite a Dense's input
  # (before_sublayer) or scale a whole sublayer (after_sublayer) (1), whose fold reads the final Dense weights.
  merge_order: ClassVar[int] = 0
  # Where the method must stand in a '+' composition, for its forward pass and its merge to agree (None: anywhere):
  # 'first' when its rule reads the pretrained Dense weight or output (DoRA, OFT, BOFT), 'last' when its fold
  # scales what every other method has added (IA3). `build_methods` refuses other orders.
  composition_position: ClassVar[Optional[str]] = None
  # How WiSE-FT (`jpeft.wise`) ensembles the method's fine-tuned model with the zero-shot one, alpha in [0, 1].
  # Weights the pretrained model has (the head, unfrozen backbone weights) are always interpolated,
  # (1 - alpha) * start + alpha * fine-tuned. WISE_INTERPOLATE: the method trains nothing else. WISE_MERGE_FACTOR:
  # it inserts modules whose output merge_factor scales, 0 removing them; WiSE sets merge_factor = alpha (for
  # LoRA, SSF, FacT, DiffFit: the same as interpolating their merged weights). None: merge_factor cannot remove
  # what it inserts (prompt tokens), so the method has no zero-shot end and no WiSE-FT.
  wise: ClassVar[Optional[str]] = None

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises ValueError for impossible hyperparameters (see `require`)."""

  def require(self, field: str, ok: bool, requirement: str) -> None:
    """Raises a ValueError naming `field`, its value and `requirement` unless `ok`."""
    if not ok:
      raise ValueError(f"PEFT method '{self.name}': {field}={getattr(self, field)!r} is invalid, it must be "
                       f"{requirement}. Fix it in the config: --config.peft.{self.name}.{field}=<value>.")

  def require_positive_int(self, field: str) -> None:
    value = getattr(self, field)
    self.require(field, isinstance(value, int) and not isinstance(value, bool) and value >= 1, "an integer >= 1")

  def require_finite(self, field: str) -> None:
    value = getattr(self, field)
    self.require(field, isinstance(value, (int, float)) and math.isfinite(value), "a finite number")

  def require_rate(self, field: str = "dropout") -> None:
    value = getattr(self, field)
    self.require(field, isinstance(value, (int, float)) and 0 <= value < 1, "a dropout rate in [0, 1)")

  # ---- forward hooks --------------------------------------------------------------------------
  def shared(self, m, ctx: Context) -> Any:
    return None

  def embed(self, m, x, ctx: Context):
    return x

  def norm(self, m, where: str, y, ctx: Context):
    return y

  def dense(self, m, where: str, z, y, ctx: Context):
    return y

  def activation(self, m, a, ctx: Context):
    return a

  def before_sublayer(self, m, where: str, z, ctx: Context):
    return z

  def after_sublayer(self, m, where: str, h, ctx: Context):
    return h

  def after_residual(self, m, where: str, x, ctx: Context):
    return x

  def parallel(self, m, where: str, x, z, ctx: Context):
    """Returns an extra residual term [B, T, D] or None."""
    return None

  def tokens(self, m, x, ctx: Context) -> list[TokenGroup]:
    return []

  def pool(self, m, feature, collected: dict[str, Any], ctx: Context):
    """feature: [B, D] pooled CLS (after the final LN); collected: TokenGroup name -> [B, n, D]."""
    return feature

  # ---- training -------------------------------------------------------------------------------
  def label(self, path: tuple[str, ...]) -> Optional[str]:
    """Trainable group of the parameter at `path` (a tuple of pytree keys), or None if not this method's.

    By default the parameters this method inserted: a path component starting with '<name>_'. A parameter the
    method defines as never trained (VeRA's shared random projections, PiSSA's principal factors) is claimed as
    FROZEN, which wins over every other method's claim (`partition.label_params`), 'full' included.
    """
    prefix = self.name + "_"
    return PEFT if any(key.startswith(prefix) for key in path) else None

  def merge(self, flat: dict[str, Any], merge_factor=1.0) -> dict[str, Any]:
    """Folds this method's parameters into plain ViT weights.

    flat: {'/'-joined path: array} holding the plain ViT and this method's parameters. Returns the same
    without this method's parameters, computing what the unmerged model computes at `merge_factor`.
    """
    raise NotImplementedError(f"PEFT method '{self.name}' is not re-parameterisable: it adds computation "
                              "that no plain ViT weight can express, so keep the unmerged model.")

  def from_backbone(self, flat: dict[str, Any]) -> dict[str, Any]:
    """Recomputes the frozen parameters this method derives from the pretrained weights, once these are loaded.

    flat: {'/'-joined path: array} of the whole model, the pretrained weights loaded. Returns the same with the
    derived parameters replaced (LoRA's PiSSA / OLoRA principal factors). Methods are initialised before the
    backbone is loaded (`jpeft.train.model_setup.build`, which calls this after loading), so a parameter computed
    from a frozen weight at initialisation saw random weights. Identity by default.
    """
    return flat

  # ---- padding (the sweep's one program per method, `jpeft.sweep.padding`) -----------------------
  def paddable(self) -> tuple[str, ...]:
    """Integer shape fields (LoRA's rank, an adapter's bottleneck) a sweep may raise to the grid's largest value
    without changing what this method computes, so that trials of every value share one compiled program.

    A field may be listed only when, for the method `padded` built with larger values and given this method's
    parameters zero-padded at the end of every axis whose length changes: (1) the output equals this method's at
    merge_factor * `pad_multiplier(padded)`; (2) the padding gets exactly zero gradients, so AdamW (decoupled
    weight decay of zeros included) keeps it zero; (3) every random draw (dropout masks) has a shape that does not
    depend on the field. Then a padded trial trains as the unpadded one does, up to float reassociation.
    Default: none.
    """
    return ()

  def pad_multiplier(self, padded: "Method") -> float:
    """What merge_factor is multiplied by so that `padded` (this method with larger `paddable` fields) computes
    this method's output: 1.0 unless an output scale reads a padded field (LoRA's alpha / r)."""
    return 1.0

  def hparams(self) -> dict[str, Any]:
    """The hyperparameter fields as a plain dict (what `build_methods` takes back)."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
  """Class decorator adding a method to the registry under `cls.name`."""
  if cls.name in _REGISTRY:
    raise ValueError(f"PEFT method '{cls.name}' registered twice")
  _REGISTRY[cls.name] = cls
  return cls


def registry() -> dict[str, type[Method]]:
  return dict(_REGISTRY)
