"""Methods that insert tokens: VPT (Jia et al., 2022) prompts and VQT (Tu et al., 2023) query tokens.

Token order inside a block is [inserted, CLS, patches]. Prompts have no module output to scale, so
merge_factor does not act on VPT; for VQT it blends the pooled feature (see `VQT`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jpeft.peft import base


def token_init(patch_size: int):
  """VPT's U(-v, v), v = sqrt(6 / (3 * patch^2 + D)): xavier-uniform as if a patch embedding produced them."""
  def init(key, shape, dtype=jnp.float32):
    bound = math.sqrt(6.0 / (3 * patch_size ** 2 + shape[-1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _batch(tokens, x):
  """[n, D] -> [B, n, D] for the batch of x."""
  return jnp.broadcast_to(tokens.astype(x.dtype), (x.shape[0],) + tokens.shape)


@dataclasses.dataclass(frozen=True)
class _VPT(base.Method):
  """Prompt tokens with dropout; subclasses say how many sets there are and how long they stay."""
  num_tokens: int = 10
  dropout: float = 0.1

  def validate(self):
    self.require_positive_int("num_tokens")
    self.require_rate()

  def prompt_group(self, x, prompts, remove_after: int, ctx) -> base.TokenGroup:
    tokens = nn.Dropout(self.dropout)(_batch(prompts, x), ctx.deterministic)
    return base.TokenGroup(name=self.name, tokens=tokens, remove_after=remove_after)


@base.register
@dataclasses.dataclass(frozen=True)
class VPTShallow(_VPT):
  """p prompts 'encoder/vpt_shallow_prompts' [p, D] inserted before block 0.

  Attributes:
    keep_prompts: True (default, the VPT paper) carries the prompts through every block; False removes them
      after block 0, as the study's code does (its shallow prompts are deep prompts of one layer), so they act
      on block 0's other tokens only.
  """
  name: ClassVar[str] = "vpt_shallow"
  grid: ClassVar[dict] = {"num_tokens": (5, 10, 50, 100, 200)}
  keep_prompts: bool = True

  def validate(self):
    super().validate()
    self.require("keep_prompts", isinstance(self.keep_prompts, bool), "True or False")

  def shared(self, m, ctx):
    return m.param(f"{self.name}_prompts", token_init(ctx.patch_size), (self.num_tokens, ctx.width))

  def tokens(self, m, x, ctx):
    if ctx.layer != 0:
      return []
    remove_after = ctx.depth - 1 if self.keep_prompts else 0
    return [self.prompt_group(x, ctx.shared[self.name], remove_after, ctx)]


@base.register
@dataclasses.dataclass(frozen=True)
class VPTDeep(_VPT):
  """p fresh prompts per prompted block, 'encoder/vpt_deep_prompts' [L, p, D]: inserted before block l,
  removed after it.

  Attributes:
    num_layers: prompt only the last L = num_layers blocks (the study's `vpt_layer`); 0 (default) prompts
      every block, L = depth, as the VPT paper.
  """
  name: ClassVar[str] = "vpt_deep"
  grid: ClassVar[dict] = {"num_tokens": (5, 10, 50, 100)}
  num_layers: int = 0

  def validate(self):
    super().validate()
    self.require("num_layers", isinstance(self.num_layers, int) and not isinstance(self.num_layers, bool) and
                 self.num_layers >= 0, "an integer >= 0 (0: every block)")

  def _first_layer(self, ctx) -> int:
    return ctx.depth - (self.num_layers or ctx.depth)

  def shared(self, m, ctx):
    # The first point where the depth is known: reject more prompted layers than the model has.
    self.require("num_layers", self.num_layers <= ctx.depth, f"at most the model's depth {ctx.depth}")
    return m.param(f"{self.name}_prompts", token_init(ctx.patch_size),
                   (ctx.depth - self._first_layer(ctx), self.num_tokens, ctx.width))

  def tokens(self, m, x, ctx):
    first = self._first_layer(ctx)
    if ctx.layer < first:
      return []
    return [self.prompt_group(x, ctx.shared[self.name][ctx.layer - first], ctx.layer, ctx)]


@base.register
@dataclasses.dataclass(frozen=True)
class VQT(base.Method):
  """Visual query tuning: T query tokens per block ('encoder/vqt_queries' [depth, T, D]) are prepended before
  block l and removed after it; they attend to the other tokens but nothing attends to them (keys and values
  exclude them), so the CLS path is the backbone's. Their outputs, after the final LN, are pooled with the
  final CLS by a learned weighted sum 'vqt_combine' [1 + depth * T] (initialised to 1; order: CLS, then
  block 0's queries, block 1's, ...):  f = w_0 CLS + sum_i w_i q_i.
  With merge_factor s the feature is CLS + s * (f - CLS), so s = 0 is the backbone's CLS.
  """
  name: ClassVar[str] = "vqt"
  wise: ClassVar[str] = base.WISE_MERGE_FACTOR
  grid: ClassVar[dict] = {"num_tokens": (1, 5, 10)}
  num_tokens: int = 10

  def validate(self):
    self.require_positive_int("num_tokens")

  def shared(self, m, ctx):
    return m.param(f"{self.name}_queries", token_init(ctx.patch_size), (ctx.depth, self.num_tokens, ctx.width))

  def tokens(self, m, x, ctx):
    return [base.TokenGroup(name=f"{self.name}_{ctx.layer}", tokens=_batch(ctx.shared[self.name][ctx.layer], x),
                            remove_after=ctx.layer, as_keys=False, collect=True)]

  def pool(self, m, feature, collected, ctx):
    outputs = [feature[:, None]] + [collected[f"{self.name}_{layer}"] for layer in range(ctx.depth)]
    stacked = jnp.concatenate(outputs, axis=1)  # [B, 1 + depth * T, D]
    weights = m.param(f"{self.name}_combine", nn.initializers.ones, (stacked.shape[1],))
    combined = jnp.einsum("btd,t->bd", stacked, weights.astype(stacked.dtype))
    return feature + ctx.merge_factor * (combined - feature)
