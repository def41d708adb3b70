"""CLIP's text tower (Radford et al., 2021): the encoder behind zero-shot heads.

token ids [B, T] -> token embedding + position embedding -> pre-LN transformer blocks under a causal mask (the
ViT's `Block`, QuickGELU, LN eps 1e-5) -> final LN -> the feature at the EOT token (the largest id in each row,
as OpenAI's `x[arange(B), text.argmax(-1)]`) -> bias-free projection -> [B, E] (not normalised).

Parameter tree (read from checkpoints by `jpeft.checkpoints.clip_text`):
  token_embedding/embedding [V, D]   pos_embedding [T, D]
  encoder/block_{i}/{ln1, attn/{qkv, proj}, ln2, mlp/{fc1, fc2}}   norm/{scale, bias}   proj/kernel [D, E]
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jpeft.models import vit
from jpeft.peft.base import Context


class CausalEncoder(nn.Module):
  """A stack of the ViT's pre-LN blocks where token t attends to tokens 0..t only."""
  depth: int
  mlp_dim: int
  num_heads: int
  act: str = "quick_gelu"
  ln_eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    tokens, width = x.shape[1], x.shape[2]
    causal = jnp.tril(jnp.ones((tokens, tokens), bool))
    ctx = Context(layer=None, depth=self.depth, width=width, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                  merge_factor=1.0, deterministic=True)
    for layer in range(self.depth):
      x = vit.Block(self.mlp_dim, self.num_heads, act=self.act, ln_eps=self.ln_eps, dtype=self.dtype,
                    name=f"block_{layer}")(x, ctx.replace(layer=layer), causal)
    return x


class TextTransformer(nn.Module):
  """CLIP text encoder. Defaults are OpenAI's ViT-B/16 text tower (width 512, 12 layers, 8 heads, E = 512).

  Attributes:
    vocab_size, context_length: token table rows V and position table rows T.
    width, depth, num_heads, mlp_dim: the transformer.
    projection_dim: E, the joint image-text embedding width.
    act: 'quick_gelu' (OpenAI's models) or 'gelu' (open_clip models trained without QuickGELU).
  """
  vocab_size: int = 49408
  context_length: int = 77
  width: int = 512
  depth: int = 12
  num_heads: int = 8
  mlp_dim: int = 2048
  projection_dim: int = 512
  act: str = "quick_gelu"
  ln_eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, token_ids):
    """token_ids: int [B, T] with T <= context_length, EOT the largest id of each row -> features [B, E]."""
    batch, tokens = token_ids.shape
    if tokens > self.context_length:
      raise ValueError(f"Token ids have {tokens} positions but the text tower has {self.context_length}; "
                       "tokenize with the tower's context length.")
    x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), dtype=self.dtype,
                 name="token_embedding")(token_ids)
    pos = self.param("pos_embedding", nn.initializers.normal(0.01), (self.context_length, self.width))
    x = x + pos[:tokens].astype(x.dtype)
    x = CausalEncoder(self.depth, self.mlp_dim, self.num_heads, self.act, self.ln_eps, self.dtype,
                      name="encoder")(x)
    x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="norm")(x)
    eot = x[jnp.arange(batch), jnp.argmax(token_ids, axis=-1)]
    return nn.Dense(self.projection_dim, use_bias=False, dtype=self.dtype, name="proj")(eot).astype(jnp.float32)


def text_model_for(params: Mapping[str, Any], *, num_heads: Optional[int] = None, act: str = "quick_gelu",
                   dtype: Any = jnp.float32) -> TextTransformer:
  """The TextTransformer whose shapes are those of params (as read by `jpeft.checkpoints.clip_text`).

  Weights do not say the number of heads: num_heads defaults to width // 64, the head width of every OpenAI and
  open_clip CLIP text tower (B: 512 / 8, L: 768 / 12, H: 1024 / 16); pass it for other towers.
  """
  vocab_size, width = np.shape(params["token_embedding"]["embedding"])
  blocks = [k for k in params["encoder"] if k.startswith("block_")]
  num_heads = num_heads or max(width // 64, 1)
  if width % num_heads:
    raise ValueError(f"num_heads={num_heads} does not divide the text tower's width {width}; pass the number of "
                     "heads of this checkpoint's text tower.")
  return TextTransformer(vocab_size=vocab_size, context_length=np.shape(params["pos_embedding"])[0], width=width,
                         depth=len(blocks), num_heads=num_heads,
                         mlp_dim=np.shape(params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"])[1],
                         projection_dim=np.shape(params["proj"]["kernel"])[1], act=act, dtype=dtype)
