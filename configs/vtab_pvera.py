"""PVeRA: probabilistic VeRA on every qkv, proj, fc1, fc2: one shared frozen random pair, per-Dense scaling vectors,
and a Gaussian latent sampled in training (mean at evaluation), as the PyTorch peft library's PVeRA at its
defaults (rank 256, d_initial 0.1).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT (the mean update).

  python -m jpeft.main --config=configs/vtab_pvera.py --config.task=dtd --workdir=runs/dtd_pvera

Hyperparameters: every field of the method under peft.pvera (see jpeft/peft/methods/pvera.py); the grid, swept
together with optim.lr and optim.wd:
  peft.pvera.rank in (64, 256, 1024)
e.g. --config.optim.lr=1e-2 --config.peft.pvera.rank=1024
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('pvera')
  config.peft.pvera = peft.default_hparams('pvera')
  return config
