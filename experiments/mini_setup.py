"""The mini study's base config and grid, shared by experiments/mini_study.py and experiments/halving_report.py."""
from typing import Optional

from jpeft import config_base
from jpeft.sweep import grid as grid_lib


def base_config(epochs: int = 10, backbone: Optional[str] = None):
  """The demo's config (the shipped mini/8 backbone, Mini VTAB, 32x32) trained `epochs` epochs with one warmup
  epoch, evaluated at the last epoch only; `backbone`: another mini/8 .npz instead of the shipped one."""
  config = config_base.demo_config()
  if backbone:
    config.pretrained.path = backbone
  config.optim.epochs = epochs
  config.optim.warmup_epochs = min(1, epochs)
  config.eval_every_epochs = epochs
  return config


def mini_grid():
  """A small grid: 2 lr x 1 wd x at most 2 values per method (the study's full grid is ~516 trainings per task).

  Shapes are kept to one per method (one compiled program per method and stage); scales, which are traced,
  get two values where the method has them.
  """
  grid = grid_lib.default_grid()
  grid.lr = (1e-3, 1e-2)
  grid.wd = (1e-4,)
  grid.final_seeds = (42, 43)  # a test spread and the seed control of jpeft.analysis; selection stays on seed 42
  small = {
      "lora": dict(rank=(8,)),
      "adapter": dict(bottleneck=(8,), scale=(0.1, 1)),
      "pfeiffer": dict(bottleneck=(8,), scale=(0.1, 1)),
      "adaptformer": dict(bottleneck=(16,), scale=(0.1, 0.2)),
      "convpass": dict(bottleneck=(8,), scale=(1, 10), conv_init=("identity",)),
      "repadapter": dict(bottleneck=(8,), scale=(0.1, 1)),
      "fact_tt": dict(rank=(8,), scale=(1, 10)),
      "fact_tk": dict(rank=(16,), scale=(1, 10)),
      "vpt_deep": dict(num_tokens=(5,)),
      "vpt_shallow": dict(num_tokens=(5,)),
      "vqt": dict(num_tokens=(1,)),
      "oft": dict(block_size=(8,)),
      "boft": dict(block_size=(4,), butterfly_factor=(2,)),
      "loha": dict(rank=(4,)),
      "lokr": dict(rank=(8,)),
      "dora": dict(rank=(8,)),
      "vera": dict(rank=(256,)),
      "hra": dict(rank=(8,)),
      "road": dict(variant=("road_1",)),
      "fourierft": dict(n_frequency=(1000,)),
      "c3a": dict(block_size=(64,)),
      "glora": dict(rank=(8,)),
      "pvera": dict(rank=(256,)),
  }
  for method, fields in small.items():
    if method in grid:
      for field, values in fields.items():
        grid[method][field] = values
  return grid
