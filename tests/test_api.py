"""The notebook API (jpeft.api): the same configs as the config files, one tiny run end to end on the shipped
mini backbone and a generated Mini VTAB task, and `import jpeft` staying free of JAX and TensorFlow."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jpeft
from jpeft import config_base
from jpeft.data import tasks
from jpeft.models import vit
from jpeft.train import run_config, splits
from tests.helpers import REPO, load_module


def _defining(config):
  return run_config.defining_values(json.loads(config.to_json()), run_config.RUN_DEFINING)


def test_import_jpeft_loads_neither_jax_nor_tensorflow():
  code = "import sys, jpeft; print(sorted(m for m in ('jax', 'tensorflow', 'jpeft.api') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
  assert out.stdout.strip() == "[]"


def test_make_config_is_what_the_config_files_build():
  # mini/8 + lora: the demo config (configs/demo.py) without its side-by-side linear run.
  demo = config_base.demo_config()
  assert _defining(jpeft.make_config("mini/8", "lora")) == _defining(demo)
  # ViT-B_16 + lora on dtd: configs/vtab_lora.py.
  module = load_module("configs/vtab_lora.py")
  assert _defining(jpeft.make_config("ViT-B_16", "lora", "dtd")) == _defining(module.get_config())
  # Overrides: a dict updates the named fields of a sub-config only.
  config = jpeft.make_config("ViT-B_16", "lora", optim=dict(lr=1e-2), peft=dict(lora=dict(rank=4)), seed=3)
  assert (config.optim.lr, config.optim.wd, config.peft.lora.rank, config.peft.lora.dropout, config.seed) == (
      1e-2, demo.optim.wd, 4, 0.1, 3)
  assert (jpeft.make_config("timm/vit_base_patch14_dinov2.lvd142m", "ssf").model.to_dict()["variant"],
          jpeft.make_config("clip-vit-b16-openai", "ssf").model.style) == ("B/14", "clip")


@pytest.mark.parametrize("backbone, kwargs, names", [
    ("mini/8", dict(optim=dict(epochz=3)), "'optim.epochz' names no config field"),
    ("mini/8", dict(peft=dict(lora=dict(rnk=3))), "'peft.lora.rnk' names no config field"),
    ("my_vit.npz", {}, "backbone 'my_vit.npz'"),
])
def test_make_config_names_a_bad_input(backbone, kwargs, names):
  with pytest.raises(ValueError, match=names):
    jpeft.make_config(backbone, "lora", **kwargs)


def test_summary_prints_the_trainable_table(capsys):
  jpeft.summary("mini/8", "lora", "mini_count")
  lora = 6 * (128 * 8 + 8 * 3 * 128)  # rank 8 on the fused qkv of 6 blocks of width 128
  head = 128 * 8 + 8
  out = capsys.readouterr().out
  assert f"trainable params: {lora + head:,} || all params: 1,242,504" in out
  assert f"peft: {lora:,}" in out and f"head: {head:,}" in out


def test_finetune_evaluate_merge_export(tmp_path, mini_count_data_dir):
  # A checkpoint file as the backbone (the tiny mu/8 ViT of the fixtures) on the generated mini_count task.
  backbone = os.path.join(REPO, "tests", "fixtures", "vit_mu8.npz")
  run = jpeft.finetune(backbone, "lora", "mini_count", workdir=str(tmp_path / "lora"), model=dict(variant="mu/8"),
                       data=dict(data_dir=mini_count_data_dir, image_size=32), optim=dict(epochs=1, warmup_epochs=0),
                       eval_every_epochs=1, checkpoint_every_epochs=1, compilation_cache=str(tmp_path / "xla"))
  assert run.result == json.loads((tmp_path / "lora" / "result.json").read_text())
  assert (run.result["mode"], run.result["eval_split"], run.result["steps"], run.result["pretrained"]) == (
      "tune", "val200", 800 // 64, backbone)

  evaluated = run.evaluate()
  assert (evaluated["split"], evaluated["accuracy"]) == ("val200", run.result["accuracy"])
  assert (tmp_path / "lora" / "eval_val200.json").exists()

  # The merged plain ViT computes the logits the LoRA run wrote.
  merged = run.merged_params()
  plain = vit.create_model("mu/8", num_classes=8)
  images = splits.load_split(run.config, tasks.get_task("mini_count"), "val200")["image"][:32]
  logits = np.asarray(jax.jit(lambda p, x: plain.apply({"params": p}, x))(merged, images))
  np.testing.assert_allclose(logits, np.load(tmp_path / "lora" / "logits_val200.npy")[:32], atol=1e-4)

  written = run.export(str(tmp_path / "export"), format="adapter")
  assert written and all(os.path.exists(p) for p in written)
