"""Pretrained checkpoints for the jpeft ViT: Google `.npz`, timm / Hugging Face / OpenAI CLIP state dicts.

Typical use (the trainer):
  shapes = jax.eval_shape(model.init, rng, images)['params']
  backbone = load_pretrained(config.pretrained.path or config.pretrained.name, target=shapes, style='vit')
  params, fresh = merge_into(model.init(rng, images)['params'], backbone)
CLIP text towers (for zero-shot heads, `jpeft.zeroshot`): `read_clip_text(path_or_name)`.
"""
from jpeft.checkpoints.clip_text import ClipText, read_clip_text
from jpeft.checkpoints.api import detect_format, fit_to_target, load_pretrained, merge_into, read_checkpoint
from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.hub import known_source, resolve
from jpeft.checkpoints.npz import save_npz
from jpeft.checkpoints.resample import resample_pos_embedding
