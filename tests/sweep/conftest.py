"""Fixtures: a tiny learnable task in the processed-folder layout and config overrides for a mu/8 ViT."""
import os

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKBONE = os.path.join(REPO, "tests", "fixtures", "vit_mu8.npz")
NUM_CLASSES = 4
SPLIT_SIZES = {"train800": 64, "val200": 32, "train800val200": 96, "test": 48}


def _write_task(root: str) -> None:
  """<root>/dtd/{images, train800.txt, ...}: 16x16 images whose colour encodes the class under heavy noise,
  so short trainings land at different accuracies (selection has something to choose)."""
  task_dir = os.path.join(root, "dtd")
  os.makedirs(os.path.join(task_dir, "images"))
  rng = np.random.default_rng(0)
  colours = rng.uniform(0, 255, (NUM_CLASSES, 3))
  index = 0
  for split, size in SPLIT_SIZES.items():
    lines = []
    for _ in range(size):
      label = index % NUM_CLASSES
      image = np.clip(colours[label] + rng.normal(0, 200, (16, 16, 3)), 0, 255).astype(np.uint8)
      name = f"images/{index}.png"
      tf.io.write_file(os.path.join(task_dir, name), tf.io.encode_png(image))
      lines.append(f"{name} {label}")
      index += 1
    with open(os.path.join(task_dir, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("sweep_folder"))
  _write_task(root)
  return root


def tiny_overrides(folder_root: str) -> dict:
  """A mu/8 ViT (the fixture backbone) on 32x32 images of the fixture task, 2 short epochs."""
  return {"task": "dtd", "data.source": "folder", "data.folder_root": folder_root, "data.image_size": 32,
          "model.variant": "mu/8", "pretrained.name": "", "pretrained.path": BACKBONE,
          "optim.batch_size": 16, "optim.epochs": 2, "optim.warmup_epochs": 1, "eval_every_epochs": 1,
          "log_every_steps": 4, "checkpoint_every_epochs": 2}


def load_config(overrides: dict):
  """configs/common.py with `overrides` applied (the in-process twin of --config.x=... flags)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("common_config", os.path.join(REPO, "configs", "common.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config
