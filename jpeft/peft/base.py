"""The contract between the ViT and a PEFT method.

A method is a frozen dataclass of hyperparameters that the ViT calls at fixed insertion points. Every hook
is an identity by default, so a method overrides only the points it uses. Hooks receive the calling linen
module `m` and create their parameters in its scope (`m.param(...)` or a submodule built inside the hook),
so a method's parameters live next to the weights they modify, e.g.
`encoder/block_3/attn/lora_a/kernel` beside `encoder/block_3/attn/qkv/kernel`.

Insertion points (see `jpeft/models/vit.py`):
  embed            patch-embedding output, [B, N, D] (before CLS and position embeddings)
  norm             a LayerNorm output: where in {'ln1', 'ln2', 'final'}, [B, T, D]
  dense            a Dense output: where in {'qkv', 'proj', 'fc1', 'fc2'}, with its input z and output y
  before_sublayer  z = LN(x) -> z' fed to the sublayer (sequential-before adapters); where in {'attn', 'mlp'}
  after_sublayer   sublayer output h -> h' (sequential-after adapters, residual gammas), before drop path
  parallel         an extra residual branch computed from (x, z), added through its own drop path
  tokens           extra tokens inserted before a block (prompts, query tokens)
  pool             the pooled feature and the collected outputs of query tokens -> final feature
The `shared` hook creates parameters once per encoder (shared across blocks, e.g. FacT's U and V); what it
returns is handed to every block hook as `ctx.shared[method.name]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Optional

import jax.numpy as jnp


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
  shared: Any = None

  def replace(self, **kw) -> "Context":
    return dataclasses.replace(self, **kw)


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


# Trainable groups. Each maps to its own learning-rate multiplier in the optimizer; FROZEN gets nothing.
FROZEN = "frozen"
HEAD = "head"
PEFT = "peft"
BACKBONE = "backbone"


@dataclasses.dataclass(frozen=True)
class Method:
  """Base class of PEFT methods: identity at every insertion point, nothing trainable but the head.

  Subclasses set `name`, declare hyperparameters as dataclass fields, override the hooks they need,
  `label` for the parameters they make trainable, `merge` when re-parameterisable, and `grid` with the
  spec's hyperparameter grid (field name -> tuple of values).
  """
  name: ClassVar[str] = "base"
  grid: ClassVar[dict[str, tuple]] = {}
  mergeable: ClassVar[bool] = False

  # ---- forward hooks --------------------------------------------------------------------------
  def shared(self, m, ctx: Context) -> Any:
    return None

  def embed(self, m, x, ctx: Context):
    return x

  def norm(self, m, where: str, y, ctx: Context):
    return y

  def dense(self, m, where: str, z, y, ctx: Context):
    return y

  def before_sublayer(self, m, where: str, z, ctx: Context):
    return z

  def after_sublayer(self, m, where: str, h, ctx: Context):
    return h

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
    """Trainable group of the parameter at `path` (a tuple of pytree keys), or None if not this method's."""
    return None

  def merge(self, params: dict) -> dict:
    """Folds this method's parameters into plain ViT weights; returns params without them."""
    raise NotImplementedError(f"method '{self.name}' is not re-parameterisable")


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
  """Class decorator adding a method to the registry under `cls.name`."""
  if cls.name in _REGISTRY:
    raise ValueError(f"PEFT method '{cls.name}' registered twice")
  _REGISTRY[cls.name] = cls
  return cls


def registry() -> dict[str, type[Method]]:
  return dict(_REGISTRY)
