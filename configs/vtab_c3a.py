"""C3A: every qkv, proj, fc1, fc2 updated by a block-circulant matrix applied as circular convolutions by FFT
(Chen et al., ACL 2025), as the PyTorch peft library's C3A at its defaults (block size 256, Xavier-uniform kernels).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_c3a.py --config.task=dtd --workdir=runs/dtd_c3a

Hyperparameters: every field of the method under peft.c3a (see jpeft/peft/methods/c3a.py); the grid, swept
together with optim.lr and optim.wd:
  peft.c3a.block_size in (64, 128, 256)     (parameters in * out / block_size per Dense)
e.g. --config.optim.lr=1e-2 --config.peft.c3a.block_size=128 --config.peft.c3a.init_weights=zeros
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('c3a')
  config.peft.c3a = peft.default_hparams('c3a')
  return config
