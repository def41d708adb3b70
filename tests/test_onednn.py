"""XLA:CPU's oneDNN matmuls as a benchmark lever: `measure.TrainLoop(compiler_options=)` compiles the train step
with them (experiments/cpu_levers.py's `xla_*` levers), and experiments/onednn_check.py reports a case that kills
its process instead of dying with it."""
import subprocess
import sys

from tests.helpers import REPO, load_module

onednn_check = load_module("experiments/onednn_check.py")

# In a child process: a oneDNN program that fails to compile kills its process (SIGILL on jaxlib 0.10.2).
_TRAIN_LOOP_SCRIPT = """
import jax, numpy as np
from jpeft.bench import measure, mfu
ONEDNN = ONEDNN_OPTIONS
def config():
  config = mfu.case_config("mu/8", "lora", "float32", batch_size=4, image_size=32, remat=False)
  config.task = "mini_count"
  return config
default, onednn = measure.TrainLoop(config()), measure.TrainLoop(config(), compiler_options=ONEDNN)
assert "__onednn_fusion" in onednn.compiled.as_text() and "__onednn_fusion" not in default.compiled.as_text()
default.run(2), onednn.run(2)
trained = {k: np.asarray(v) for k, v in default._args[0].items()}
for key, value in onednn._args[0].items():
  np.testing.assert_allclose(np.asarray(value), trained[key], rtol=1e-4, atol=1e-6, err_msg=key)
assert np.abs(trained["head/kernel"]).max() > 0  # trained values, not the zero-initialised head
print("same parameters")
"""


def test_train_loop_compiles_with_onednn_and_trains_the_same_parameters():
  script = _TRAIN_LOOP_SCRIPT.replace("ONEDNN_OPTIONS", repr(onednn_check.ONEDNN))
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "same parameters" in proc.stdout, proc.stderr[-3000:]


def test_check_reports_a_working_case_and_one_that_kills_its_process():
  assert onednn_check.check(onednn_check._CASES["dense"][1]).startswith("ok: 1 oneDNN fusions")
  died = onednn_check.check("import os; os.kill(os.getpid(), 4)")  # SIGILL, as a failed oneDNN compile ends
  assert died.startswith("FAILED (exit code -4"), died
