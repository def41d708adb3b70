"""Many-shot on the offline Mini VTAB task `mini_objects_many` (jpeft/data/mini_manyshot.py), shipped backbone.

  python -m jpeft.main --config=configs/manyshot_mini.py:train500 --workdir=runs/mini_many_train500

Sizes: train50, train100 (5, 10 per class; five 80/20 tuning splits), train500, train2000 (50, 200 per class; one
90/10 split), full (20,000). 32x32 images held in memory (they fit), no augmentation, the demo's LoRA and optimiser
settings (config_base.demo_config) with the size's epochs. What experiments/many_shot.py runs by default.
"""
from jpeft import config_base


def get_config(size: str = "train500"):
  size = size or "train500"
  config = config_base.manyshot_config("mini_objects_many", size, "lora")
  demo = config_base.demo_config()
  config.model, config.pretrained, config.peft = demo.model, demo.pretrained, demo.peft
  config.data.image_size = demo.data.image_size
  config.data.in_memory = True  # 20,000 images of 32x32 are 250 MB
  config.optim.batch_size = 32  # the smallest tuning split has 40 images
  config.optim.lr = demo.optim.lr
  return config
