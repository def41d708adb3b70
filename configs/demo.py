"""The offline demo: LoRA on a Mini VTAB task with the small backbone shipped in the package.

  python -m jpeft.main --config=configs/demo.py

Needs no network and no GPU: the task's TFDS files are generated into `data.data_dir` (TFDS default
~/tensorflow_datasets) in seconds on first use, and the backbone is `jpeft/assets/mini-ViT_8.npz`, a
`mini/8` ViT pre-trained by `experiments/pretrain_mini.py` on a separate generated task (a stand-in
for ImageNet-21K, not a substitute). Trains on train800val200 and reports test accuracy ('final'
mode), then does the same with linear probing (`compare_methods`) for reference.

Expected (measured 2026-11-25 in a fresh venv on 2 CPU cores, 69 s wall including generating the task):
  mini_count test accuracy: lora 0.343 | linear 0.281
(another floating-point reduction order, e.g. single-threaded XLA, moves lora by a point or two)
(LoRA on a randomly initialised backbone, same recipe: 0.242, measured 2026-11-26). Results land in runs/demo/ and
runs/demo/linear/. Shortened runs (CI, tests/mini/test_demo.py) override the epochs, e.g.
--config.optim.epochs=2 --config.optim.warmup_epochs=0.
"""
import os

import jpeft
from configs import common

# The shipped backbone, resolved inside the installed package so the demo works from any directory.
MINI_BACKBONE = os.path.join(os.path.dirname(jpeft.__file__), 'assets', 'mini-ViT_8.npz')


def get_config():
  config = common.get_config('lora')
  config.mode = 'final'
  config.task = 'mini_count'
  config.compare_methods = ('linear',)

  config.data.image_size = 32  # Mini VTAB's native size: no resizing
  config.model.variant = 'mini/8'
  config.model.drop_path_rate = 0.0
  config.pretrained.name = ''
  config.pretrained.path = MINI_BACKBONE

  config.peft.lora = dict(rank=8, dropout=0.0)

  config.optim.batch_size = 64
  config.optim.epochs = 30
  config.optim.warmup_epochs = 3
  config.optim.lr = 1e-2
  config.optim.wd = 1e-4

  config.log_every_steps = 15
  config.eval_every_epochs = 30
  config.checkpoint_every_epochs = 30
  return config
