"""A LoRA run on a pretrained backbone: the backbone stays bit-identical and only trained leaves are saved."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from .conftest import load_config, tiny_overrides
from jpeft import checkpoints
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import model_setup, splits, steps, trainer


def test_lora_trains_only_adapters_and_head(folder_root, tmp_path):
  # A "pretrained" mu/8 backbone written as a Google-layout .npz, as a real checkpoint would be.
  plain = vit.create_model("mu/8", num_classes=0)
  backbone = plain.init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))["params"]
  npz = str(tmp_path / "backbone.npz")
  checkpoints.save_npz(backbone, npz, num_heads=2)

  workdir = tmp_path / "lora"
  config = load_config(tiny_overrides(folder_root, **{
      "method": "lora", "pretrained.path": npz, "optim.epochs": 2, "save_merged": True}))
  result = trainer.run(config, str(workdir))
  lora_per_block = 32 * 8 + 8 * 96  # A: D -> r, B: r -> 3D, rank 8
  assert result["trainable_params"] == 2 * lora_per_block + (32 * 47 + 47)

  # The frozen part the run trained against is the checkpoint's backbone, bit for bit.
  setup = model_setup.build(config)
  original = partition.flatten(backbone)
  assert set(setup.frozen) == set(original)
  for path, value in setup.frozen.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(original[path]), err_msg=path)

  # The checkpoint holds the trained leaves (LoRA and head) and their Adam moments, nothing of the backbone.
  step_dir = workdir / "checkpoints" / str(result["steps"])
  saved = ocp.StandardCheckpointer().restore(os.path.abspath(step_dir / "state"))
  trained = set(saved["trainable"])
  assert trained == {p for p in setup.labels if p.startswith("head/") or "/lora_" in p}
  assert set(saved["opt_state"]["mu"]) == trained and set(saved["opt_state"]["nu"]) == trained

  # Saved adapters + the original backbone reproduce the run's final logits exactly.
  val = splits.load_split(config, setup.task, "val200")
  out = jax.jit(steps.make_eval_step(setup.model))(saved["trainable"], setup.frozen, val,
                                                   steps.hparams_from_config(config, 1))
  np.testing.assert_array_equal(np.asarray(out["logits"]), np.load(workdir / "logits_val200.npy"))

  # The merged export is a plain ViT (no LoRA leaves) with the same predictions.
  merged = ocp.StandardCheckpointer().restore(os.path.abspath(workdir / "merged"))
  assert not any("lora" in p for p in partition.flatten(merged))
  logits = vit.create_model("mu/8", num_classes=47).apply({"params": merged}, val["image"])
  np.testing.assert_allclose(np.asarray(logits), out["logits"], rtol=1e-4, atol=1e-5)
