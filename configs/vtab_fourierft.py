"""FourierFT: every qkv, proj, fc1, fc2 updated by the inverse 2-D DFT of n learned spectral coefficients at fixed
random positions (Gao et al., ICML 2024), as the PyTorch peft library's FourierFT at its defaults
(n_frequency 1000, scaling 150, random_loc_seed 777, coefficients N(0, 1) at the start).

ViT-B/16 (ImageNet-21K) on VTAB-1K with the study's recipe (jpeft/config_base.py).
Re-parameterisable: --config.save_merged=True also writes the merged plain ViT.

  python -m jpeft.main --config=configs/vtab_fourierft.py --config.task=dtd --workdir=runs/dtd_fourierft

Hyperparameters: every field of the method under peft.fourierft (see jpeft/peft/methods/fourierft.py); the grid,
swept together with optim.lr and optim.wd:
  peft.fourierft.n_frequency in (1000, 3000, 10000)
e.g. --config.optim.lr=1e-2 --config.peft.fourierft.n_frequency=3000 --config.peft.fourierft.init_weights=True
"""
from jpeft import config_base, peft


def get_config():
  config = config_base.get_config('fourierft')
  config.peft.fourierft = peft.default_hparams('fourierft')
  return config
