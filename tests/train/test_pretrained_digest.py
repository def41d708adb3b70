"""Checkpoints hold the trainable parameters only, so every reader of a run loads the frozen backbone from the
pretrained path again: a run records its file's SHA-256, and resuming, WiSE-FT, timm export and init_from refuse a
file that changed since (as the shipped mini backbone did, at the same path)."""
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

from .conftest import REPO, load_config, tiny_overrides
from jpeft import export, wise
from jpeft.train import checkpointing, model_setup, trainer
from jpeft.train.errors import ConfigError

FIXTURE_BACKBONE = f"{REPO}/tests/fixtures/vit_mu8.npz"
CHANGED = r"when its SHA-256 was [0-9a-f]{16}\.\.\., but the file there now hashes to [0-9a-f]{16}"


def test_a_run_refuses_a_pretrained_file_changed_since_it_trained(folder_root, tmp_path):
  backbone = tmp_path / "backbone.npz"
  shutil.copy(FIXTURE_BACKBONE, backbone)
  overrides = tiny_overrides(folder_root, **{"pretrained.path": str(backbone), "optim.epochs": 2,
                                             "method": "lora"})
  workdir = tmp_path / "run"
  first = trainer.run(load_config(overrides), str(workdir))
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"), create=False)
  meta = ckpt.read_meta(ckpt.latest_step())
  ckpt.close()
  assert meta[model_setup.PRETRAINED_DIGEST] == hashlib.sha256(backbone.read_bytes()).hexdigest()

  original = backbone.read_bytes()
  arrays = dict(np.load(backbone))
  arrays["cls"] = arrays["cls"] + 1.0  # another backbone at the same path, same shapes
  np.savez(backbone, **arrays)
  with pytest.raises(ConfigError, match=f"The run in '{workdir}' was trained on .*backbone.npz' {CHANGED}"):
    trainer.run(load_config(overrides), str(workdir))
  with pytest.raises(ConfigError, match=CHANGED):
    wise.run([str(workdir)], [0.0, 1.0], out_dir=str(tmp_path / "wise"))
  with pytest.raises(ConfigError, match=CHANGED):
    export.export_run(str(workdir), out=str(tmp_path / "merged.safetensors"), format="timm")
  adapter = export.export_run(str(workdir), out=str(tmp_path / "adapter.safetensors"), format="adapter")
  assert len(adapter) == 1  # the trainable parameters alone do not read the backbone
  with pytest.raises(ConfigError, match=CHANGED):
    trainer.run(load_config(dict(overrides, **{"init_from.workdir": str(workdir)})), str(tmp_path / "next"))
  assert not (tmp_path / "wise").exists() and not (tmp_path / "merged.safetensors").exists()

  backbone.write_bytes(original)  # the file the run trained on: everything reads it again
  again = trainer.run(load_config(overrides), str(workdir))
  assert again["accuracy"] == first["accuracy"]
  assert json.loads((workdir / "result.json").read_text())["accuracy"] == first["accuracy"]
  wise.run([str(workdir)], [0.0, 1.0], out_dir=str(tmp_path / "wise"))


def test_a_run_checkpointed_before_digests_warns_when_the_file_is_newer(folder_root, tmp_path, monkeypatch, capsys):
  backbone = tmp_path / "backbone.npz"
  shutil.copy(FIXTURE_BACKBONE, backbone)
  overrides = tiny_overrides(folder_root, **{"pretrained.path": str(backbone), "optim.epochs": 2})
  workdir = tmp_path / "run"
  with monkeypatch.context() as patch:  # as jpeft did before runs recorded the digest
    patch.setattr(model_setup, "pretrained_digest", lambda config: None)
    trainer.run(load_config(overrides), str(workdir))
  wise.run([str(workdir)], [0.0], out_dir=str(tmp_path / "wise_before"))
  assert "warning" not in capsys.readouterr().err  # the file is older than the checkpoints
  later = (workdir / "checkpoints").stat().st_mtime + 60
  os.utime(backbone, (later, later))
  wise.run([str(workdir)], [0.0], out_dir=str(tmp_path / "wise_after"))
  assert re.search(r"warning: the run in .* was checkpointed before .*backbone.npz' was modified after that",
                   capsys.readouterr().err)
