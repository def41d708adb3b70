"""Adapter files (trainable parameters + config) and merged full checkpoints."""
import numpy as np
import pytest

from .conftest import HEADS, apply, init, make
from jpeft import checkpoints
from jpeft.peft import export, partition


def test_adapter_roundtrip_restores_the_model(tmp_path, images):
  model, methods, params = init("lora+bitfit")
  trainable, frozen = partition.split(params, partition.label_params(params, methods))
  path = str(tmp_path / "adapter.safetensors")
  export.save_adapter(path, trainable, methods)
  loaded, loaded_methods = export.load_adapter(path)
  assert loaded_methods == methods
  assert set(loaded) == set(trainable) and not set(loaded) & set(frozen)
  restored = partition.combine(loaded, frozen)
  np.testing.assert_array_equal(apply(model, restored, images), apply(model, params, images))


def test_load_adapter_rejects_foreign_files(tmp_path):
  bad = tmp_path / "x.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(ValueError, match="x.safetensors"):
    export.load_adapter(str(bad))


def test_merged_checkpoint_loads_as_a_plain_vit(tmp_path, images):
  model, methods, params = init("lora+ssf")
  path = str(tmp_path / "merged.npz")
  export.save_merged(path, params, methods, num_heads=HEADS, merge_factor=0.6)
  plain_model, _ = make("linear")
  loaded = checkpoints.read_checkpoint(path)
  np.testing.assert_allclose(apply(plain_model, loaded, images), apply(model, params, images, 0.6),
                             rtol=1e-4, atol=1e-4)
