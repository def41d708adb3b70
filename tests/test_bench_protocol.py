"""experiments/bench_protocol.py: the study's protocol timed end to end (jpeft sides here; the torch side needs a
Python with torch and timm, which CI does not install)."""
import json
import subprocess
import sys

from tests.helpers import REPO, run_programs


def _run(*args):
  return subprocess.run([sys.executable, "experiments/bench_protocol.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)


def test_both_jpeft_sides_run_the_protocol_and_agree(tmp_path):
  out = tmp_path / "result.json"
  proc = _run(f"--out={out}", "--variant=mu/8", "--epochs=1", "--lr=1e-3,1e-2", "--final_seeds=42",
              "--sides=sweep,sequential")
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  sweep, sequential = result["sides"]["sweep"], result["sides"]["sequential"]
  for side in (sweep, sequential):
    assert side["tune_s"] > 0 and side["final_s"] > 0
    assert abs(side["tune_s"] + side["final_s"] - side["total_s"]) < 1e-6
    assert side["programs"] > 0 and 0 <= side["test_accuracy"] <= 1
  # The same trials, vmapped or one by one: the same selection and test accuracy (float reassociation aside).
  assert sweep["selected"] == sequential["selected"]
  assert abs(sweep["test_accuracy"] - sequential["test_accuracy"]) <= 0.01
  assert "sequential / sweep, total:" in proc.stdout


def test_an_existing_out_or_an_unknown_side_is_refused_before_any_work(tmp_path):
  out = tmp_path / "result.json"
  out.write_text("kept")
  existing, unknown = run_programs([  # two programs, one start (tests/program_runner.py)
      ["experiments/bench_protocol.py", f"--out={out}", "--variant=mu/8"],
      ["experiments/bench_protocol.py", f"--out={tmp_path / 'new.json'}", "--sides=sweep,tf"]])
  assert existing.returncode == 1 and f"--out={out} exists" in existing.stderr
  assert out.read_text() == "kept"
  assert unknown.returncode == 1 and "--sides=sweep,tf" in unknown.stderr
  assert not (tmp_path / "new.json").exists()
