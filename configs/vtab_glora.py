"""GLoRA: every qkv, proj, fc1, fc2 as W + W * A + B with bias b + b * D + E + W C (generalised LoRA, Chavan et
al., 2023), as the PyTorch peft library's GLoRA at its defaults (A, B and C low-rank, D and E scalars, all starting
at zero).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_glora.py --config.task=dtd --workdir=runs/dtd_glora

Hyperparameters: every field of the method under peft.glora (see jpeft/peft/methods/glora.py); the grid, swept
together with optim.lr and optim.wd:
  peft.glora.rank in (4, 8, 16)
e.g. --config.optim.lr=1e-2 --config.peft.glora.rank=16 --config.peft.glora.config_d_e=vector
The paths: config_a_b in (lora, vector, constant, none), config_c in (lora, vector, none),
config_d_e in (vector, constant, none). (The GLoRA paper searches a path per layer by evolution; this is peft's
one configuration for every layer.)
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('glora')
  config.peft.glora = peft.default_hparams('glora')
  return config
