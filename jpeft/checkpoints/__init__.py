"""Pretrained checkpoints for the jpeft ViT: Google `.npz`, timm / Hugging Face / OpenAI CLIP state dicts."""
from jpeft.checkpoints.errors import CheckpointError
from jpeft.checkpoints.npz import save_npz
