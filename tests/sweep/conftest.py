"""Fixtures: a tiny noisy task in the processed-folder layout and config overrides for a mu/8 ViT."""
import os

import pytest

from tests.helpers import REPO, load_config, write_folder_task  # noqa: F401 (re-exported)

BACKBONE = os.path.join(REPO, "tests", "fixtures", "vit_mu8.npz")
# A sweep that kills itself with -9 after its first recorded chunk (usage: its docstring).
KILLED_SWEEP = os.path.join(REPO, "tests", "sweep", "sweep_killed_after_first_chunk.py")


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
  # Heavy noise, so short trainings land at different accuracies (selection has something to choose).
  root = str(tmp_path_factory.mktemp("sweep_folder"))
  write_folder_task(root, noise=200)
  return root


def tiny_overrides(folder_root: str) -> dict:
  """A mu/8 ViT (the fixture backbone) on 32x32 images of the fixture task, 2 short epochs."""
  return {"task": "dtd", "data.source": "folder", "data.folder_root": folder_root, "data.image_size": 32,
          "model.variant": "mu/8", "pretrained.name": "", "pretrained.path": BACKBONE,
          "optim.batch_size": 16, "optim.epochs": 2, "optim.warmup_epochs": 1, "eval_every_epochs": 1,
          "log_every_steps": 4, "checkpoint_every_epochs": 2}
