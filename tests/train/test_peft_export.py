"""`python -m jpeft.export --format=peft`: a run written as a PyTorch PEFT adapter directory (the tensor and config
mapping itself is checked against the library's own files in tests/peft/test_peft_format.py)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file

from .conftest import load_config, tiny_overrides
from jpeft import checkpoints, export, outputs, peft
from jpeft.checkpoints import statedict
from jpeft.export import peft_export, peft_format
from jpeft.models import vit
from jpeft.peft import partition
from jpeft.train import checkpointing, model_setup, reuse, trainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _saved_run(tmp, overrides) -> tuple[str, object]:
  """A workdir whose checkpoint holds random non-zero trained parameters (as the trainer writes one)."""
  config = load_config(overrides)
  setup = model_setup.build(config)
  rng = np.random.default_rng(0)
  trainable = {k: (0.3 * rng.normal(size=np.shape(v))).astype(np.float32) for k, v in setup.trainable.items()}
  workdir = str(tmp / f"run_{config.method}")
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
  ckpt.save(3, dict(trainable=trainable, opt_state=optax.ScaleByAdamState(
      count=jnp.int32(3), mu=trainable, nu=trainable), step=3, rng=jax.random.key_data(jax.random.PRNGKey(0))),
            trainer._meta(config, 1, [], 0, {}, None, total_steps=3))  # pylint: disable=protected-access
  ckpt.wait()
  ckpt.close()
  return workdir, setup


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
  params = vit.create_model("mu/8", num_classes=0).init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))
  path = str(tmp_path_factory.mktemp("backbone") / "backbone.npz")
  checkpoints.save_npz(params["params"], path, num_heads=2)
  return path


@pytest.mark.parametrize("method", ["dora", "vera"])  # the two whose files need the frozen backbone
def test_export_reads_back_as_the_run(method, folder_root, backbone, tmp_path):
  overrides = tiny_overrides(folder_root, **{"method": method, "pretrained.path": backbone,
                                             "peft": {method: {"rank": 2}}})
  workdir, setup = _saved_run(tmp_path, overrides)
  out = str(tmp_path / "peft")
  paths = export.export_run(workdir, out, "peft")
  assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors", "base_model.safetensors"]
  assert sorted(paths) == sorted(os.path.join(out, n) for n in os.listdir(out))
  config, tensors = peft_export.read_adapter(out)
  assert config["peft_type"] == peft_format.METHODS[method] and config["modules_to_save"] == ["head"]
  assert config["base_model_name_or_path"] == "vit_base_patch16_224" and config["r"] == 2
  name, hparams = peft_format.method_of(config, tensors, out)
  (method_read,) = peft.build_methods(name, {name: hparams})
  assert method_read == setup.methods[0]
  frozen = dict(setup.frozen)  # flat
  back = peft_format.from_peft(method_read, config, tensors, frozen, depth=2)
  saved = reuse.load_run(workdir).trainable  # flat, as the checkpoint holds it
  for path, value in saved.items():
    np.testing.assert_allclose(back[path], value, rtol=1e-5, atol=1e-6, err_msg=path)
  base = partition.flatten(statedict.from_state_dict(load_file(os.path.join(out, "base_model.safetensors"))))
  for path, value in base.items():  # the backbone, with the trained head
    np.testing.assert_array_equal(value, saved[path] if path.startswith("head/") else frozen[path], err_msg=path)
  if method == "vera":  # the projections the run used travel with the adapter
    np.testing.assert_array_equal(tensors["base_model.vera_A"], frozen["encoder/vera_a"].T)


def test_cli_prints_the_loading_lines_and_refuses_an_existing_directory(folder_root, backbone, tmp_path):
  workdir, _ = _saved_run(tmp_path, tiny_overrides(folder_root, **{"method": "lora", "pretrained.path": backbone}))
  out = str(tmp_path / "lora_peft")
  cmd = [sys.executable, "-m", "jpeft.export", f"--workdir={workdir}", "--format=peft", f"--out={out}"]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"base.load_state_dict(safetensors.torch.load_file('{out}/base_model.safetensors'))" in done.stdout
  assert "timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=47, patch_size=8" in done.stdout
  assert f"model = PeftModel.from_pretrained(base, '{out}').eval()" in done.stdout
  before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  with pytest.raises(outputs.OutputError, match=f"--out='{out}' is a directory that is not empty; pass --overwrite"):
    export.export_run(workdir, out, "peft")  # in-process: the CLI prints this message and exits 1 (cli.USER_ERRORS)
  assert {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)} == before
  # With overwrite its files are replaced (new inodes: written whole, then renamed), a file of the user's kept.
  inodes = {n: os.stat(os.path.join(out, n)).st_ino for n in before}
  with open(os.path.join(out, "notes.txt"), "w") as f:
    f.write("mine")
  paths = export.export_run(workdir, out, "peft", overwrite=True)
  assert sorted(os.path.basename(p) for p in paths) == sorted(before)
  assert all(os.stat(os.path.join(out, n)).st_ino != inodes[n] for n in before)
  assert open(os.path.join(out, "notes.txt")).read() == "mine"
  assert sorted(os.listdir(out)) == sorted([*before, "notes.txt"])


def test_lora_of_any_mergeable_run_is_exact_at_full_rank(folder_root, backbone, tmp_path):
  """lora+bitfit: the weight changes as a LoRA (bias changes in lora_B.bias), the modules whose biases changed
  (norms, patch embedding) and the head as modules_to_save; full rank gives the run's logits."""
  workdir, _ = _saved_run(tmp_path, tiny_overrides(folder_root, **{"method": "lora+bitfit",
                                                                   "pretrained.path": backbone}))
  out = str(tmp_path / "lora_full")
  paths, report = export.export_lora_run(workdir, out, "full")
  assert report["rank"] == 32 and max(report["relative_error"].values()) < 1e-5
  assert report["max_logit_change"] < 1e-4 < report["max_logit"]
  config, tensors = peft_export.read_adapter(out)
  assert (config["peft_type"], config["r"], config["lora_alpha"], config["lora_bias"]) == ("LORA", 32, 32, True)
  # BitFit's changed biases outside the block Linears: every LayerNorm, the patch embedding; and the head.
  assert {"head", "norm", "patch_embed.proj", "blocks.1.norm2"} <= set(config["modules_to_save"])
  assert f"{peft_format.PREFIX}blocks.1.mlp.fc2.lora_B.bias" in tensors and len(paths) == 3
  _, low = export.export_lora_run(workdir, str(tmp_path / "lora_1"), "1", with_base=False)
  # LoRA (rank 8) changes qkv's weight; the other Linears' weights are unchanged (their biases only): error 0.
  assert low["relative_error"]["blocks.1.attn.qkv"] > 0.1 and low["relative_error"]["blocks.1.mlp.fc1"] == 0
  assert low["max_logit_change"] > report["max_logit_change"]
