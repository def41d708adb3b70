"""Zero-shot classification heads from a CLIP checkpoint's text tower: the study's robustness head.

For each class, every prompt template is filled with the class name, encoded by the text tower, L2-normalised;
the class embedding is their mean, re-normalised (Radford et al., 2021; open_clip's
`build_zero_shot_classifier`). The head is then

  image feature [D] -> proj (CLIP's bias-free visual projection [D, E]) -> L2-normalise -> head (kernel =
  logit_scale * class embeddings^T [E, C], bias 0) -> logits [C]

so its logits are CLIP's zero-shot logits. In jpeft's ViT both layers are `head` (trainable under every method;
`jpeft.peft.partition.label_params`), and the L2 normalisation is `VisionTransformer(normalize_feature=True)`.
A run uses it with `config.head_init = 'zeroshot'` (see `zeroshot_config_head`).

Class names and templates: 'imagenet' (OpenAI's 1000 curated ImageNet class names) and 'openai_imagenet' (the 80
templates of OpenAI's `Prompt_Engineering_for_ImageNet.ipynb`), both as open_clip's `zero_shot_metadata.py` has
them and shipped in `jpeft/assets/`, or a text file with one entry per line (templates hold '{}').
Heads are cached as `.npz` under `<cache_dir>/zeroshot/`, keyed by the checkpoint file (path, size, mtime), the
class names, the templates and the text-tower options; the file holds `proj/kernel`, `head/kernel`, `head/bias`.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jpeft.checkpoints import hub
from jpeft.checkpoints.clip_text import ClipText, read_clip_text
from jpeft.checkpoints.errors import CheckpointError
from jpeft.models.clip_text import text_model_for
from jpeft.models.clip_tokenizer import ASSETS, load_tokenizer

BUILTIN = {"imagenet": os.path.join(ASSETS, "imagenet_classnames.txt"),
           "openai_imagenet": os.path.join(ASSETS, "openai_imagenet_templates.txt")}


def read_list(name_or_path: str, what: str) -> list[str]:
  """A built-in list ('imagenet', 'openai_imagenet') or a UTF-8 text file, one entry per non-empty line."""
  path = BUILTIN.get(name_or_path, os.path.expanduser(name_or_path))
  if not os.path.isfile(path):
    raise ValueError(f"{what} '{name_or_path}' is neither a built-in list ({', '.join(BUILTIN)}) nor a text file; "
                     "pass one of those, or a file with one entry per line.")
  with open(path, encoding="utf-8") as f:
    entries = [line.strip() for line in f if line.strip()]
  if what == "templates" and any(t.count("{}") != 1 for t in entries):
    bad = next(t for t in entries if t.count("{}") != 1)
    raise ValueError(f"Template '{bad}' in {path} must contain '{{}}' exactly once (where the class name goes), "
                     "e.g. 'a photo of a {}.'.")
  return entries


def class_embeddings(clip: ClipText, classnames: Sequence[str], templates: Sequence[str], *,
                     num_heads: Optional[int] = None, act: str = "quick_gelu", vocab: Optional[str] = None,
                     batch_size: int = 256) -> np.ndarray:
  """[C, E] unit-norm class embeddings: the mean over templates of unit-norm text features, re-normalised."""
  model = text_model_for(clip.params, num_heads=num_heads, act=act)
  tokenizer = load_tokenizer(vocab, model.context_length)
  encode = jax.jit(lambda ids: model.apply({"params": clip.params}, ids))
  prompts = [t.format(c) for c in classnames for t in templates]
  features = []
  for start in tqdm(range(0, len(prompts), batch_size), desc="zero-shot head", unit="batch",
                    disable=len(prompts) <= batch_size):
    ids = tokenizer(prompts[start:start + batch_size])
    rows = len(ids)
    ids = np.pad(ids, ((0, batch_size - rows), (0, 0)))  # one shape, one compilation; padded rows are dropped
    features.append(np.asarray(encode(jnp.asarray(ids)))[:rows])
  feats = np.concatenate(features).reshape(len(classnames), len(templates), -1).astype(np.float64)
  feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
  mean = feats.mean(axis=1)
  return (mean / np.linalg.norm(mean, axis=-1, keepdims=True)).astype(np.float32)


def cache_path(checkpoint: str, classnames: Sequence[str] | str = "imagenet",
               templates: Sequence[str] | str = "openai_imagenet", *, num_heads: Optional[int] = None,
               act: str = "quick_gelu", vocab: Optional[str] = None, cache_dir: Optional[str] = None) -> str:
  """Where `build_head` caches this head: <cache_dir>/zeroshot/<hash>.npz, the hash of the checkpoint file's
  path, size and modification time (a replaced file is a new key), the class names, templates and text options."""
  classnames = read_list(classnames, "classnames") if isinstance(classnames, str) else list(classnames)
  templates = read_list(templates, "templates") if isinstance(templates, str) else list(templates)
  path = hub.resolve(checkpoint, cache_dir)
  stat = os.stat(path)
  vocab_id = os.path.realpath(os.path.expanduser(vocab)) if vocab else "jpeft-openai-bpe"
  blob = json.dumps([os.path.realpath(path), stat.st_size, stat.st_mtime_ns, classnames, templates, num_heads, act,
                     vocab_id])
  key = hashlib.sha256(blob.encode()).hexdigest()[:20]
  return os.path.join(os.path.expanduser(cache_dir or hub.DEFAULT_CACHE), "zeroshot", f"{key}.npz")


def build_head(checkpoint: str, classnames: Sequence[str] | str = "imagenet",
               templates: Sequence[str] | str = "openai_imagenet", *, num_heads: Optional[int] = None,
               act: str = "quick_gelu", vocab: Optional[str] = None, cache_dir: Optional[str] = None,
               batch_size: int = 256) -> dict[str, dict[str, np.ndarray]]:
  """The zero-shot head of a whole CLIP checkpoint (see the module docstring), cached.

  Args:
    checkpoint: a CLIP file or known name with both towers (OpenAI `.pt`, open_clip, Hugging Face
      'openai/clip-vit-base-patch16'); the visual projection and the text tower come from the same file, so
      they share one embedding space.
    classnames, templates: lists, or names of built-in lists / text files (see `read_list`).
    num_heads, act: the text tower's heads (default width // 64) and activation ('quick_gelu' for OpenAI's).
    vocab: the tokenizer vocabulary (default: the OpenAI vocabulary jpeft ships; see `clip_tokenizer`).
    cache_dir: default ~/.cache/jpeft (the checkpoints' cache); heads go to <cache_dir>/zeroshot/<key>.npz.
    batch_size: prompts per text-tower call.
  Returns:
    {'proj': {'kernel': [D, E]}, 'head': {'kernel': [E, C], 'bias': [C] zeros}}, float32 numpy; the kernel is
    logit_scale x the class embeddings (logit_scale = exp of the checkpoint's, 100 for OpenAI's CLIP).
  """
  classnames = read_list(classnames, "classnames") if isinstance(classnames, str) else list(classnames)
  templates = read_list(templates, "templates") if isinstance(templates, str) else list(templates)
  path = hub.resolve(checkpoint, cache_dir)
  cache = cache_path(checkpoint, classnames, templates, num_heads=num_heads, act=act, vocab=vocab,
                     cache_dir=cache_dir)
  if os.path.isfile(cache):
    with np.load(cache) as f:
      return {"proj": {"kernel": f["proj/kernel"]}, "head": {"kernel": f["head/kernel"], "bias": f["head/bias"]}}
  clip = read_clip_text(path)
  if clip.visual_proj is None:
    raise CheckpointError(f"'{path}' has a text tower but no visual projection ('visual.proj' / "
                          "'visual_projection.weight'); the zero-shot head needs the whole CLIP it came from.")
  embeddings = class_embeddings(clip, classnames, templates, num_heads=num_heads, act=act, vocab=vocab,
                                batch_size=batch_size)
  if embeddings.shape[1] != clip.visual_proj.shape[1]:
    raise CheckpointError(f"'{path}': text embeddings have width {embeddings.shape[1]} but the visual projection "
                          f"maps to {clip.visual_proj.shape[1]}; the file mixes two CLIP models.")
  head = {"proj": {"kernel": clip.visual_proj},
          "head": {"kernel": (clip.logit_scale * embeddings.T).astype(np.float32),
                   "bias": np.zeros(len(classnames), np.float32)}}
  os.makedirs(os.path.dirname(cache), exist_ok=True)
  tmp = f"{cache}.part{os.getpid()}.npz"  # written whole, then renamed: a cache hit is never a partial file
  np.savez(tmp, **{"proj/kernel": head["proj"]["kernel"], "head/kernel": head["head"]["kernel"],
                   "head/bias": head["head"]["bias"]})
  os.replace(tmp, cache)
  return head


def zeroshot_config_head(config, num_classes: int) -> dict[str, dict[str, np.ndarray]]:
  """`build_head` for a run's config (`config.head_init == 'zeroshot'`): the CLIP checkpoint is
  `config.zeroshot.checkpoint`, else the run's pretrained one; its class count must be the task's."""
  z = config.zeroshot
  classnames = read_list(z.classnames, "classnames")
  if len(classnames) != num_classes:
    raise ValueError(f"config.zeroshot.classnames='{z.classnames}' has {len(classnames)} classes but the task has "
                     f"{num_classes}; pass a class-name file with one line per class, in the task's label order.")
  return build_head(z.checkpoint or config.pretrained.path or config.pretrained.name, classnames, z.templates)
