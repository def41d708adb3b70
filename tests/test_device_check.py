"""experiments/device_check.sh (issue 31.3c) at tiny sizes on CPU, in a Python that cannot import TensorFlow (the
device machines have none): every part runs, writes its JSON, and summary.md has the three tables."""
import json
import os
import subprocess
import sys

from tests.helpers import REPO

SCRIPT = os.path.join(REPO, "experiments", "device_check.sh")


def _env(tmp_path, **extra) -> dict:
  shim = tmp_path / "no_tensorflow"
  shim.mkdir()
  (shim / "sitecustomize.py").write_text(  # `import tensorflow` raises ImportError, as where it is not installed
      "import sys\nsys.modules['tensorflow'] = None\nsys.modules['tensorflow_datasets'] = None\n")
  return dict(os.environ, PYTHON=sys.executable, PYTHONPATH=f"{shim}{os.pathsep}{REPO}", JAX_PLATFORMS="cpu",
              **extra)


def test_tiny_device_check_runs_without_tensorflow(tmp_path):
  out = tmp_path / "results"
  proc = subprocess.run(["bash", SCRIPT], env=_env(tmp_path, DEVICE_CHECK_TINY="1", DEVICE_CHECK_OUT=str(out)),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "tensorflow" not in (proc.stdout + proc.stderr).lower()
  mfu = json.loads((out / "mfu.json").read_text())
  attention = json.loads((out / "attention_xla.json").read_text())
  assert [(r["variant"], r["attention"]) for r in mfu + attention] == [("mu/8", "einsum"), ("mu/8", "xla")]
  protocol = json.loads((out / "protocol.json").read_text())
  assert protocol["data"] == "synthetic" and protocol["trial_batch"] == "auto"
  assert set(protocol["sides"]) in ({"sweep", "sequential"}, {"sweep", "sequential", "torch"})
  assert protocol["sides"]["sweep"]["selected"] == protocol["sides"]["sequential"]["selected"]
  assert "--trial_batch=auto: 2 trials per program" in (out / "device_check.log").read_text()
  if "torch" not in protocol["sides"]:  # CI has no torch: said in one line, not an error
    assert "the PyTorch loop is skipped" in proc.stdout
  summary = (out / "summary.md").read_text()
  for heading in ("## Train step (MFU)", "## Attention implementations", "## The tuning protocol"):
    assert heading in summary
  device = json.loads((out / "device.json").read_text())
  assert device["tiny"] is True and device["failed"] == []
  assert sorted(os.listdir(out)) == ["attention_xla.json", "device.json", "device_check.log", "mfu.json",
                                     "protocol.json", "summary.md"]
  # A second run refuses the folder the first one wrote.
  (tmp_path / "again").mkdir()
  again = subprocess.run(["bash", SCRIPT], env=_env(tmp_path / "again", DEVICE_CHECK_TINY="1",
                                                    DEVICE_CHECK_OUT=str(out)), capture_output=True, text=True,
                         timeout=120)
  assert again.returncode == 2 and f"{out} exists" in again.stderr


def test_the_real_check_refuses_a_cpu(tmp_path):
  proc = subprocess.run(["bash", SCRIPT], env=_env(tmp_path, DEVICE_CHECK_OUT=str(tmp_path / "results")),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "device_check: error: JAX sees no GPU or TPU here (backend 'cpu'" in proc.stderr
  assert "DEVICE_CHECK_TINY=1" in proc.stderr and not (tmp_path / "results").exists()
