"""`jpeft.outputs`: an output path never replaces a file unless told, never a run's records, and is written
atomically with ordinary permissions."""
import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from jpeft import outputs


@pytest.fixture
def workdir(tmp_path):
  """A run's workdir as the trainer leaves it (the files that matter here)."""
  run = tmp_path / "run"
  (run / "checkpoints" / "8").mkdir(parents=True)
  (run / "result.json").write_text(json.dumps({"accuracy": 0.5}))
  np.save(run / "logits_val200.npy", np.zeros((2, 3), np.float32))
  (run / "export").mkdir()
  save_file({"a": np.zeros(2, np.float32)}, str(run / "export" / "adapter.safetensors"),
            metadata={outputs.EXPORT_METADATA_KEY: "{}"})
  return run


@pytest.mark.parametrize("name", ["result.json", "logits_val200.npy", "checkpoints/8/x.safetensors",
                                  "metrics.jsonl", "labels_test.npy", "init_head.npz", "checkpoints"])
def test_a_runs_records_are_never_an_output(workdir, name):
  path = str(workdir / name)
  for overwrite in (False, True):  # existing or not, with or without overwrite
    with pytest.raises(outputs.OutputError, match="never"):
      outputs.check_file(path, overwrite)
  with pytest.raises(outputs.OutputError, match="never|existing file where a directory"):
    outputs.check_dir(path, overwrite=True)


def test_the_workdir_itself_is_never_an_output_directory(workdir):
  with pytest.raises(outputs.OutputError, match="is the workdir of a run"):
    outputs.check_dir(str(workdir), overwrite=True)


def test_a_file_the_run_holds_is_never_replaced_even_if_unknown(workdir):
  (workdir / "notes.safetensors").write_bytes(b"not an export")
  with pytest.raises(outputs.OutputError, match="not an earlier export.*even with --overwrite"):
    outputs.check_file(str(workdir / "notes.safetensors"), overwrite=True)


def test_existing_files_need_overwrite(workdir, tmp_path):
  earlier = str(workdir / "export" / "adapter.safetensors")  # an earlier export: replaceable when asked
  with pytest.raises(outputs.OutputError, match="exists; pass --overwrite"):
    outputs.check_file(earlier)
  assert outputs.check_file(earlier, overwrite=True) == earlier
  mine = tmp_path / "mine.bin"
  mine.write_bytes(b"a user's file")
  with pytest.raises(outputs.OutputError, match="exists; pass --overwrite"):
    outputs.check_file(str(mine))
  assert outputs.check_file(str(mine), overwrite=True) == str(mine)
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("x")
  with pytest.raises(outputs.OutputError, match="not empty; pass --overwrite"):
    outputs.check_dir(str(tmp_path / "full"))
  assert outputs.check_dir(str(tmp_path / "full"), overwrite=True)
  # New files are fine, in a workdir too (its export folder, or beside its records).
  assert outputs.check_file(str(workdir / "model.safetensors")) and outputs.check_dir(str(workdir / "peft"))


def test_a_link_into_a_workdir_is_seen_through(workdir, tmp_path):
  os.symlink(workdir / "result.json", tmp_path / "link.json")
  with pytest.raises(outputs.OutputError, match="keeps its records"):
    outputs.check_file(str(tmp_path / "link.json"), overwrite=True)


def test_atomic_path_gives_ordinary_permissions_and_refuses_to_clobber(tmp_path):
  old = os.umask(0o022)
  try:
    path = str(tmp_path / "out.safetensors")
    with outputs.atomic_path(path) as tmp:
      save_file({"a": np.ones(3, np.float32)}, tmp)  # safetensors itself makes its files 0600
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with pytest.raises(FileExistsError):
      with outputs.atomic_path(path) as tmp:
        save_file({"a": np.zeros(3, np.float32)}, tmp)
    with outputs.atomic_file(path, overwrite=True) as f:
      f.write(b"new")
    assert open(path, "rb").read() == b"new" and stat.S_IMODE(os.stat(path).st_mode) == 0o644
  finally:
    os.umask(old)
  assert os.listdir(tmp_path) == ["out.safetensors"]  # no temporary file left behind


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
  path = tmp_path / "out.bin"
  path.write_bytes(b"before")
  with pytest.raises(RuntimeError):
    with outputs.atomic_file(str(path), overwrite=True) as f:
      f.write(b"half of the new")
      raise RuntimeError("killed mid-write")
  assert path.read_bytes() == b"before" and os.listdir(tmp_path) == ["out.bin"]
