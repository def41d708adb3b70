"""Fixtures: a tiny learnable VTAB-style task in the processed-folder layout, and a tiny config."""
import pytest

from tests.helpers import REPO, cli_args, load_config, write_folder_task  # noqa: F401 (re-exported)


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("vtab_folder"))
  write_folder_task(root, noise=40)
  return root


def tiny_overrides(folder_root: str, **extra) -> dict:
  """Config overrides for a mu/8 ViT on 32x32 images of the fixture task, random init, a few epochs."""
  overrides = {
      "task": "dtd", "data.source": "folder", "data.folder_root": folder_root, "data.image_size": 32,
      "model.variant": "mu/8", "pretrained.name": "", "optim.batch_size": 16, "optim.epochs": 4,
      "optim.warmup_epochs": 1, "optim.lr": 1e-2, "log_every_steps": 2, "eval_every_epochs": 1,
      "checkpoint_every_epochs": 2,
  }
  overrides.update(extra)
  return overrides
