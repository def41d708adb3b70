"""Many-shot CLEVR-distance (the study's protocol, jpeft/data/manyshot.py): the full 70,000-image training set.

  python -m jpeft.main --config=configs/manyshot_clevr_dist.py --config.method=lora --workdir=runs/clevr_lora

Test: TFDS CLEVR validation (15,000), as the study. Tuning: 1,000 images held out of train (tune mode trains on
the other 69,000); the study's CLEVR validation lies inside its training set, ours does not. 40 epochs, 4 warmup,
plain resize to 224, no augmentation, ImageNet mean/std. The study's grid: lr {5e-4, 1e-3}, wd 1e-4, drop path 0
(--grid.lr=5e-4,1e-3 --grid.wd=1e-4 --config.model.drop_path_rate=0 in experiments/many_shot.py).
"""
from jpeft import config_base


def get_config(size: str = "full"):
  config = config_base.manyshot_config("clevr_dist", size or "full")
  config.model.drop_path_rate = 0.0
  return config
