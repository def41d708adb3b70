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


def test_pissa_factors_follow_the_loaded_backbone(folder_root, tmp_path):
  """model_setup.build derives PiSSA's frozen principal factors from the pretrained weights, not the random ones
  the methods were initialised with, so the model at step 0 is the backbone."""
  from jpeft.peft.methods.lora import principal_factors
  plain = vit.create_model("mu/8", num_classes=0)
  backbone = plain.init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))["params"]
  npz = str(tmp_path / "backbone.npz")
  checkpoints.save_npz(backbone, npz, num_heads=2)
  config = load_config(tiny_overrides(folder_root, **{"method": "lora", "pretrained.path": npz}))
  config.peft.lora = {"init": "pissa", "rank": 2}
  setup = model_setup.build(config)
  kernel = partition.flatten(backbone)["encoder/block_1/attn/qkv/kernel"]
  a0, b0 = principal_factors(kernel, 2, 1.0, "pissa")
  np.testing.assert_allclose(setup.frozen["encoder/block_1/attn/lora_principal_a"] @
                             setup.frozen["encoder/block_1/attn/lora_principal_b"], a0 @ b0, atol=1e-5)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = partition.combine(setup.trainable, setup.frozen)
  plain_head = vit.create_model("mu/8", num_classes=setup.task.num_classes)
  np.testing.assert_allclose(setup.model.apply({"params": params}, x),
                             plain_head.apply({"params": {**backbone, "head": params["head"]}}, x),
                             rtol=1e-4, atol=1e-4)
