"""Vision Transformer (Dosovitskiy et al., 2021), the CLIP image tower and DINOv2, with PEFT insertion points.

The model reads like the paper: patch embedding -> [CLS] + position embeddings -> pre-LN blocks
(x + DropPath(Attn(LN x)); x + DropPath(MLP(LN x))) -> final LN -> CLS -> head. Every place a PEFT method of
`jpeft/peft` can act is a loop over `self.methods` calling one hook (see `jpeft/peft/base.py`); with no
methods the model is the plain ViT.

Parameter tree (plain ViT; CLIP adds `ln_pre` and `proj`, and has no `embedding/bias`; DINOv2 adds LayerScale
gains `encoder/block_{i}/{ls1, ls2}` [D]):
  embedding/{kernel [p, p, 3, D], bias [D]}   cls [1, 1, D]   pos_embedding [1, 1 + N, D]
  encoder/block_{i}/{ln1, attn/{qkv, proj}, ln2, mlp/{fc1, fc2}}   norm/{scale, bias}   head/{kernel, bias}
Dense kernels are stored [in, out]; the fused qkv output is [q | k | v], each [heads * head_dim].
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jpeft.peft.base import Context, Method, TokenGroup

# width, depth, mlp_dim, num_heads. Tiny sizes are for tests and the offline demo.
_SIZES = {
    "mu": (32, 2, 64, 2),
    "mini": (128, 6, 512, 4),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
}

# Differences between Google's ViT and OpenAI's CLIP image tower.
_STYLES = {
    "vit": dict(ln_eps=1e-6, act="gelu", pre_norm=False, patch_bias=True),
    "clip": dict(ln_eps=1e-5, act="quick_gelu", pre_norm=True, patch_bias=False),
    # DINOv2 (timm `vit_*_patch14_dinov2`): the plain ViT plus LayerScale on every residual branch.
    "dinov2": dict(ln_eps=1e-6, act="gelu", pre_norm=False, patch_bias=True, layer_scale=True),
}


def decode_variant(variant: str) -> dict[str, int]:
  """'B/16' -> dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)."""
  match = re.fullmatch(r"(\w+)/(\d+)", variant)
  if not match or match.group(1) not in _SIZES:
    raise ValueError(f"Unknown ViT variant '{variant}': expected '<size>/<patch>' with size one of "
                     f"{sorted(_SIZES)}, e.g. 'B/16'.")
  width, depth, mlp_dim, num_heads = _SIZES[match.group(1)]
  return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads,
              patch_size=int(match.group(2)))


def style_kwargs(style: str) -> dict[str, Any]:
  if style not in _STYLES:
    raise ValueError(f"Unknown model style '{style}': expected one of {sorted(_STYLES)}.")
  return dict(_STYLES[style])


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS = {"gelu": lambda x: nn.gelu(x, approximate=False), "quick_gelu": quick_gelu}


# How softmax(q k^T / sqrt(d)) v is computed (config.model.attention). All three are the same math; they differ in
# summation order and in what is kept for the backward pass: 'einsum' is written out here (the [B, H, T, T]
# logits materialised), 'xla' and 'cudnn' are `jax.nn.dot_product_attention` with that implementation (XLA's
# fused path; cuDNN's flash attention, on NVIDIA GPUs in bfloat16 / float16 only).
ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn")


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv Dense.

  key_mask: [T] marks the tokens others may attend to, or [T, T] (query, key) pairs that may attend (the CLIP
  text tower's causal mask).
  implementation: one of ATTENTION_IMPLEMENTATIONS.
  """
  num_heads: int
  methods: tuple[Method, ...] = ()
  dtype: Any = jnp.float32
  implementation: str = "einsum"

  @nn.compact
  def __call__(self, z, ctx: Context, key_mask=None):
    batch, tokens, width = z.shape
    head_dim = width // self.num_heads
    qkv = nn.Dense(3 * width, dtype=self.dtype, name="qkv")(z)
    for method in self.methods:
      qkv = method.dense(self, "qkv", z, qkv, ctx)
    q, k, v = jnp.split(qkv.reshape(batch, tokens, 3, self.num_heads, head_dim), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, H, hd]
    mask = None if key_mask is None else (key_mask if key_mask.ndim == 2 else key_mask[None, :])  # [T|1, T]
    if self.implementation == "einsum":
      logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(q.dtype)
      if mask is not None:
        logits = jnp.where(mask[None, None], logits, jnp.finfo(logits.dtype).min)
      weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
      out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    elif self.implementation in ATTENTION_IMPLEMENTATIONS:
      out = jax.nn.dot_product_attention(q, k, v, mask=None if mask is None else mask[None, None],
                                         implementation=self.implementation)
    else:
      raise ValueError(f"Unknown attention implementation '{self.implementation}': expected one of "
                       f"{ATTENTION_IMPLEMENTATIONS}.")
    out = out.reshape(batch, tokens, width)
    y = nn.Dense(width, dtype=self.dtype, name="proj")(out)
    for method in self.methods:
      y = method.dense(self, "proj", out, y, ctx)
    return y


class Mlp(nn.Module):
  """fc1 -> activation -> fc2."""
  mlp_dim: int
  act: str = "gelu"
  methods: tuple[Method, ...] = ()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, ctx: Context):
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(z)
    for method in self.methods:
      h = method.dense(self, "fc1", z, h, ctx)
    a = _ACTIVATIONS[self.act](h)
    for method in self.methods:
      a = method.activation(self, a, ctx)
    y = nn.Dense(z.shape[-1], dtype=self.dtype, name="fc2")(a)
    for method in self.methods:
      y = method.dense(self, "fc2", a, y, ctx)
    return y


class Block(nn.Module):
  """Pre-LN transformer block with adapter insertion points around both sublayers.

  layer_scale: LayerScale (Touvron et al., 2021; DINOv2): a learned per-channel gain `ls1` / `ls2` [D] on each
  residual branch, x + DropPath(gain * branch), as timm's `init_values`. It multiplies the branch after every
  method's hooks, and parallel branches too (as the study's block scales its parallel adapters).
  """
  mlp_dim: int
  num_heads: int
  drop_path: float = 0.0
  act: str = "gelu"
  ln_eps: float = 1e-6
  methods: tuple[Method, ...] = ()
  dtype: Any = jnp.float32
  layer_scale: bool = False
  attention: str = "einsum"

  def _sublayer(self, where: str, x, ctx: Context, key_mask):
    ln = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln1" if where == "attn" else "ln2")
    z = ln(x)
    for method in self.methods:
      z = method.norm(self, "ln1" if where == "attn" else "ln2", z, ctx)
    z_in = z
    for method in self.methods:
      z_in = method.before_sublayer(self, where, z_in, ctx)
    if where == "attn":
      h = Attention(self.num_heads, self.methods, self.dtype, self.attention, name="attn")(z_in, ctx, key_mask)
    else:
      h = Mlp(self.mlp_dim, self.act, self.methods, self.dtype, name="mlp")(z_in, ctx)
    for method in self.methods:
      h = method.after_sublayer(self, where, h, ctx)
    gain = 1.0
    if self.layer_scale:  # 1e-5 is timm's init_values for DINOv2; pretrained gains replace it
      gain = self.param("ls1" if where == "attn" else "ls2", nn.initializers.constant(1e-5),
                        (x.shape[-1],)).astype(x.dtype)
    # Drop path: one Bernoulli per example, the whole branch dropped or kept (scaled by 1 / keep).
    drop_path = lambda t: nn.Dropout(self.drop_path, broadcast_dims=(1, 2))(t * gain, ctx.deterministic)
    out = x + drop_path(h)
    for method in self.methods:
      extra = method.parallel(self, where, x, z, ctx)
      if extra is not None:
        out = out + drop_path(extra)
    for method in self.methods:
      out = method.after_residual(self, where, out, ctx)
    return out

  @nn.compact
  def __call__(self, x, ctx: Context, key_mask=None):
    x = self._sublayer("attn", x, ctx, key_mask)
    return self._sublayer("mlp", x, ctx, None)


class Encoder(nn.Module):
  """Stack of blocks; inserts and removes method tokens (prompts, query tokens) around them."""
  depth: int
  mlp_dim: int
  num_heads: int
  drop_path_rate: float = 0.0
  act: str = "gelu"
  ln_eps: float = 1e-6
  methods: tuple[Method, ...] = ()
  dtype: Any = jnp.float32
  layer_scale: bool = False
  remat: bool = False
  attention: str = "einsum"

  @nn.compact
  def __call__(self, x, ctx: Context):
    """x: [B, 1 + N, D] (CLS first). Returns (x [B, 1 + N, D], collected token outputs by group name)."""
    ctx = ctx.replace(shared={method.name: method.shared(self, ctx) for method in self.methods})
    # jax.checkpoint per block: only block inputs are kept for the backward pass; Context is a pytree whose
    # arrays (merge_factor, shared) are traced and whose other fields are static.
    block_cls = nn.remat(Block) if self.remat else Block
    active: list[TokenGroup] = []  # inserted groups, in sequence order from the front
    collected = {}
    for layer in range(self.depth):
      lctx = ctx.replace(layer=layer, num_prefix=sum(g.tokens.shape[1] for g in active))
      for method in self.methods:
        for group in method.tokens(self, x, lctx):
          active.insert(0, group)
          x = jnp.concatenate([group.tokens.astype(x.dtype), x], axis=1)
      lctx = lctx.replace(num_prefix=sum(g.tokens.shape[1] for g in active))
      key_mask = None
      if not all(g.as_keys for g in active):
        key_mask = jnp.concatenate([jnp.full((g.tokens.shape[1],), g.as_keys) for g in active] +
                                   [jnp.ones((x.shape[1] - lctx.num_prefix,), bool)])
      rate = self.drop_path_rate * layer / max(self.depth - 1, 1)  # linear over depth, as timm
      x = block_cls(self.mlp_dim, self.num_heads, rate, self.act, self.ln_eps, self.methods, self.dtype,
                    layer_scale=self.layer_scale, attention=self.attention,
                    name=f"block_{layer}")(x, lctx, key_mask)
      kept = []
      offset = 0
      pieces = []
      for group in active:
        n = group.tokens.shape[1]
        if group.remove_after <= layer or layer == self.depth - 1:
          if group.collect:
            collected[group.name] = x[:, offset:offset + n]
        else:
          kept.append(group)
          pieces.append(x[:, offset:offset + n])
        offset += n
      x = jnp.concatenate(pieces + [x[:, offset:]], axis=1)
      active = kept
    return x, collected


class VisionTransformer(nn.Module):
  """ViT / CLIP image tower / DINOv2 with a fresh linear head.

  Attributes:
    num_classes: head outputs; 0 returns the pooled feature (or the CLIP projection).
    patch_size, width, depth, mlp_dim, num_heads: see `decode_variant`.
    projection_dim: CLIP's bias-free visual projection (None for plain ViT).
    normalize_feature: L2-normalise the (projected) feature before the head: CLIP's zero-shot head
      (`jpeft.zeroshot`), whose kernel holds class text embeddings x logit scale.
    layer_scale: DINOv2's per-block LayerScale gains (see `Block`).
    methods: PEFT methods, applied in order at every insertion point.
    dtype: compute dtype (parameters stay float32).
    remat: recompute each block's activations in the backward pass (`nn.remat`, i.e. jax.checkpoint).
    attention: how attention is computed, one of ATTENTION_IMPLEMENTATIONS (see there).
  """
  num_classes: int
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  mlp_dim: int = 3072
  num_heads: int = 12
  drop_path_rate: float = 0.0
  ln_eps: float = 1e-6
  act: str = "gelu"
  pre_norm: bool = False
  patch_bias: bool = True
  layer_scale: bool = False
  projection_dim: Optional[int] = None
  normalize_feature: bool = False
  methods: tuple[Method, ...] = ()
  dtype: Any = jnp.float32
  remat: bool = False
  attention: str = "einsum"

  @nn.compact
  def __call__(self, images, *, train: bool = False, merge_factor=1.0):
    """images: [B, H, W, 3] -> logits [B, num_classes] (or features [B, D] when num_classes == 0)."""
    x = nn.Conv(self.width, (self.patch_size,) * 2, strides=(self.patch_size,) * 2, padding="VALID",
                use_bias=self.patch_bias, dtype=self.dtype, name="embedding")(images.astype(self.dtype))
    batch, grid_h, grid_w, width = x.shape
    x = x.reshape(batch, grid_h * grid_w, width)
    ctx = Context(layer=None, depth=self.depth, width=width, mlp_dim=self.mlp_dim,
                  num_heads=self.num_heads, merge_factor=merge_factor, deterministic=not train,
                  grid=(grid_h, grid_w), patch_size=self.patch_size)
    for method in self.methods:
      x = method.embed(self, x, ctx)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, width))
    x = jnp.concatenate([jnp.tile(cls, (batch, 1, 1)).astype(x.dtype), x], axis=1)
    if self.has_variable("params", "pos_embedding"):
      stored = self.get_variable("params", "pos_embedding").shape[1]
      if stored != x.shape[1]:
        raise ValueError(f"Position embeddings have {stored} tokens but the image gives {x.shape[1]} "
                         f"(a {grid_h}x{grid_w} grid + CLS): load the checkpoint for this image size "
                         "(the loader resamples position embeddings).")
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], width))
    x = x + pos.astype(x.dtype)
    if self.pre_norm:
      x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln_pre")(x)
    x, collected = Encoder(self.depth, self.mlp_dim, self.num_heads, self.drop_path_rate, self.act,
                           self.ln_eps, self.methods, self.dtype, layer_scale=self.layer_scale,
                           remat=self.remat, attention=self.attention, name="encoder")(x, ctx)

    # CLS and every collected token group go through the final LN and its hooks in one call, so a method's
    # parameters at the final norm (SSF's) are created once.
    names = list(collected)
    tokens = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="norm")(
        jnp.concatenate([x[:, :1]] + [collected[name] for name in names], axis=1))
    for method in self.methods:
      tokens = method.norm(self, "final", tokens, ctx)
    feature = tokens[:, 0]
    sizes = [collected[name].shape[1] for name in names]
    splits = jnp.split(tokens[:, 1:], list(itertools.accumulate(sizes))[:-1], axis=1) if names else []
    collected = dict(zip(names, splits))
    for method in self.methods:
      feature = method.pool(self, feature, collected, ctx)
    if self.projection_dim:
      feature = nn.Dense(self.projection_dim, use_bias=False, dtype=self.dtype, name="proj")(feature)
    if self.normalize_feature:
      feature = feature / jnp.linalg.norm(feature.astype(jnp.float32), axis=-1, keepdims=True).astype(feature.dtype)
    if not self.num_classes:
      return feature.astype(jnp.float32)
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                      name="head")(feature)
    return logits.astype(jnp.float32)


def create_model(variant: str = "B/16", *, style: str = "vit", num_classes: int,
                 methods: Sequence[Method] = (), **kwargs) -> VisionTransformer:
  """Builds the model for a variant string ('B/16') and style ('vit', 'clip' or 'dinov2').

  kwargs override any VisionTransformer attribute (drop_path_rate, projection_dim, dtype, ...).
  """
  return VisionTransformer(num_classes=num_classes, methods=tuple(methods),
                           **{**decode_variant(variant), **style_kwargs(style), **kwargs})
