"""Tools that read another run (jpeft.export, Run.export, jpeft.wise, init_from) refuse an unfinished run (killed
before its last step, or its newest checkpoint damaged) naming the step found and the step it was meant to reach,
and with the flag that allows it record the step used in every output; and an export's --out never replaces a
file unless told (--overwrite), never a run's own records, with ordinary permissions."""
import glob
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from safetensors import safe_open

from .conftest import REPO, load_config, tiny_overrides
from jpeft import api, export, outputs, wise
from jpeft.peft.export import load_adapter
from jpeft.train import model_setup, optim, reuse, trainer
from tests.helpers import run_programs

BACKBONE = f"{REPO}/tests/fixtures/vit_mu8.npz"
STEPS_PER_EPOCH = 4  # the fixture task's 64 train800 images in batches of 16
UNFINISHED = r"unfinished run: its newest checkpoint is step 4, and it was meant to reach step 8"


@pytest.fixture(scope="module")
def runs(folder_root, tmp_path_factory):
  """{'finished', 'unfinished', 'damaged'} workdirs and the overrides of a 2-epoch LoRA run checkpointed at each
  epoch (steps 4 and 8): finished; killed after its first checkpoint (step 8 and result.json gone, as a kill
  leaves it); its newest checkpoint damaged."""
  overrides = tiny_overrides(folder_root, **{"method": "lora", "pretrained.path": BACKBONE, "optim.epochs": 2,
                                             "checkpoint_every_epochs": 1, "checkpoint_max_to_keep": 3})
  tmp = tmp_path_factory.mktemp("unfinished")
  finished = str(tmp / "finished")
  trainer.run(load_config(overrides), finished)
  assert sorted(os.listdir(os.path.join(finished, "checkpoints"))) == ["4", "8"]
  workdirs = dict(finished=finished, unfinished=str(tmp / "unfinished"), damaged=str(tmp / "damaged"))
  for name in ("unfinished", "damaged"):
    shutil.copytree(finished, workdirs[name])
    os.remove(os.path.join(workdirs[name], "result.json"))
  shutil.rmtree(os.path.join(workdirs["unfinished"], "checkpoints", "8"))
  for path in glob.glob(os.path.join(workdirs["damaged"], "checkpoints", "8", "state", "d", "*")):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  return workdirs, overrides


def _files(folder):
  return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def _run_metadata(path):
  with safe_open(path, framework="np") as f:
    return json.loads(f.metadata()[export.RUN_METADATA_KEY])


def test_completion_is_decided_in_one_place(runs):
  workdirs, _ = runs
  done = reuse.load_run(workdirs["finished"]).completion
  assert (done.step, done.planned_step, done.finished) == (8, 8, True)
  with pytest.raises(reuse.UnfinishedRunError, match=f"--workdir='.*unfinished': it is an {UNFINISHED}"):
    reuse.load_run(workdirs["unfinished"])
  with pytest.raises(reuse.UnfinishedRunError, match=r"newest checkpoint \(step 8\) is damaged; the newest "
                                                    r"intact one is step 4, and the run was meant to reach step 8\. "
                                                    r".*--allow_unfinished to use step 4\.$"):
    reuse.load_run(workdirs["damaged"])
  for name in ("unfinished", "damaged"):
    saved = reuse.load_run(workdirs[name], allow_unfinished=True)
    assert saved.completion.record() == dict(step=4, planned_step=8, finished=False) and saved.step == 4


def test_completion_of_early_stopped_and_older_runs():
  config = json.dumps({"optim": {"epochs": 10}})
  # Checkpoints written before they recorded total_steps: all at epoch ends, so steps per epoch = step / epoch.
  assert reuse.completion(12, dict(epoch=3, config=config), 12).planned_step == 40
  assert not reuse.completion(12, dict(epoch=3, config=config), 12).finished
  stopped = dict(epoch=3, config=config, total_steps=40, early_stopping=dict(stopped_epoch=3))
  assert reuse.completion(12, stopped, 12).finished  # early stopping ended it: finished below the planned step
  assert not reuse.completion(12, stopped, 16).finished  # ... unless a newer checkpoint is damaged


def test_export_refuses_an_unfinished_run_and_records_the_step_when_allowed(runs, tmp_path):
  workdirs, overrides = runs
  out = lambda fmt: str(tmp_path / (f"{fmt}.safetensors" if fmt in export.FILE_FORMATS else fmt))
  for fmt in export.FORMATS:
    with pytest.raises(reuse.UnfinishedRunError, match=UNFINISHED):
      export.export_run(workdirs["unfinished"], out(fmt), fmt)
  with pytest.raises(reuse.UnfinishedRunError, match="newest checkpoint .step 8. is damaged"):
    api.Run(load_config(overrides), workdirs["damaged"], {}).export(str(tmp_path / "api.safetensors"))
  assert not os.listdir(tmp_path)
  for fmt in export.FORMATS:
    paths = export.export_run(workdirs["unfinished"], out(fmt), fmt, allow_unfinished=True)
    path = [p for p in paths if p.endswith(".safetensors")][0]  # the file, or the directory's adapter weights
    assert {k: _run_metadata(path)[k] for k in ("step", "planned_step", "finished")} == dict(
        step=4, planned_step=8, finished=False)
  path, = api.Run(load_config(overrides), workdirs["finished"], {}).export(str(tmp_path / "done.safetensors"))
  assert {k: _run_metadata(path)[k] for k in ("step", "planned_step", "finished")} == dict(
      step=8, planned_step=8, finished=True)


def test_wise_refuses_an_unfinished_run_and_records_the_step_when_allowed(runs, tmp_path):
  workdirs, _ = runs
  with pytest.raises(reuse.UnfinishedRunError, match=UNFINISHED):
    wise.run([workdirs["unfinished"]], [0.0, 1.0], out_dir=str(tmp_path / "wise"))
  assert not (tmp_path / "wise").exists()
  paths = wise.run([workdirs["unfinished"], workdirs["finished"]], [0.0, 1.0], out_dir=str(tmp_path / "wise"),
                   allow_unfinished=True)
  rows = json.loads(open(paths["json"]).read())["rows"]
  assert [(r["alpha"], r["step"], r["planned_step"], r["finished"]) for r in rows] == [
      (0.0, 4, 8, False), (1.0, 4, 8, False), (0.0, 8, 8, True), (1.0, 8, 8, True)]
  table = open(paths["md"]).read()
  assert f"({workdirs['unfinished']}): step 4 of 8, UNFINISHED" in table
  assert f"({workdirs['finished']}): step 8 of 8, finished." in table
  assert open(paths["csv"]).readline().rstrip().endswith(",run,step,planned_step,finished")


def test_init_from_refuses_an_unfinished_run_and_records_the_step_when_allowed(runs, tmp_path):
  workdirs, overrides = runs
  config = load_config(dict(overrides, **{"init_from.workdir": workdirs["unfinished"]}))
  setup = model_setup.build(config)
  tx = optim.make_optimizer(config.optim, setup.labels)
  with pytest.raises(reuse.UnfinishedRunError, match=f"--config.init_from.workdir=.*{UNFINISHED}.*"
                                                    "--config.init_from.allow_unfinished=True to use step 4"):
    reuse.start_from(config, setup.trainable, setup.labels, tx)
  with pytest.raises(reuse.UnfinishedRunError, match=UNFINISHED):  # mode 'eval' of another run reads it too
    trainer.run(load_config(dict(overrides, mode="eval", **{"init_from.workdir": workdirs["unfinished"]})),
                str(tmp_path / "eval"))
  config.init_from.allow_unfinished = True
  _, _, record = reuse.start_from(config, setup.trainable, setup.labels, tx)
  assert (record["step"], record["planned_step"], record["finished"]) == (4, 8, False)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_clis_refuse_an_unfinished_run_in_one_line_and_proceed_when_allowed(runs, tmp_path):
  workdirs, _ = runs
  refused_out, out = str(tmp_path / "refused.safetensors"), str(tmp_path / "adapter.safetensors")
  wise_refused, refused, allowed = run_programs([  # three programs, one start (tests/program_runner.py)
      ["-m", "jpeft.wise", f"--workdir={workdirs['unfinished']}", f"--out={tmp_path / 'wise'}"],
      ["-m", "jpeft.export", f"--workdir={workdirs['unfinished']}", "--format=adapter", f"--out={refused_out}"],
      ["-m", "jpeft.export", f"--workdir={workdirs['unfinished']}", "--format=adapter", f"--out={out}",
       "--allow_unfinished"]])
  line = wise_refused.stderr.strip()
  assert wise_refused.returncode == 1 and len(line.splitlines()) == 1, line[-2000:]
  assert "jpeft.wise: error:" in line and "step 4, and it was meant to reach step 8" in line
  assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
  assert "step 4, and it was meant to reach step 8" in refused.stderr and "--allow_unfinished" in refused.stderr
  assert not os.path.exists(refused_out)
  assert allowed.returncode == 0, allowed.stderr[-2000:]
  assert json.loads(allowed.stdout.splitlines()[0]) == dict(paths=[out], step=4, planned_step=8, finished=False)
  assert "warning:" in allowed.stderr and "using step 4" in allowed.stderr


def test_export_never_replaces_a_runs_records(runs, tmp_path):
  workdirs, _ = runs
  workdir = workdirs["finished"]
  before = {name: open(os.path.join(workdir, name), "rb").read() for name in _files(workdir)}
  refused = _cli("jpeft.export", f"--workdir={workdir}", "--format=adapter",
                 f"--out={os.path.join(workdir, 'result.json')}", "--overwrite")
  assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
  assert "result.json" in refused.stderr and "never" in refused.stderr
  for fmt in export.FORMATS:
    for name in ("result.json", "logits_val200.npy", os.path.join("checkpoints", "8", "x.safetensors")):
      with pytest.raises(outputs.OutputError, match="never"):
        export.export_run(workdir, os.path.join(workdir, name), fmt, overwrite=True)
  assert {name: open(os.path.join(workdir, name), "rb").read() for name in _files(workdir)} == before


def test_export_replaces_a_file_only_with_overwrite_and_writes_ordinary_permissions(runs, tmp_path):
  workdirs, overrides = runs
  old = os.umask(0o022)
  try:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"a file the user made")
    for fmt in export.FILE_FORMATS:
      with pytest.raises(outputs.OutputError, match="exists; pass --overwrite"):
        export.export_run(workdirs["finished"], str(out), fmt)
    with pytest.raises(outputs.OutputError, match="exists; pass --overwrite"):
      api.Run(load_config(overrides), workdirs["finished"], {}).export(str(out), "timm")
    assert out.read_bytes() == b"a file the user made"
    for fmt in export.FILE_FORMATS:
      assert export.export_run(workdirs["finished"], str(out), fmt, overwrite=True) == [str(out)]
      assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert set(load_adapter(str(out))[0]) == set(reuse.load_run(workdirs["finished"]).trainable)
    # The default output, <workdir>/export/<format>.safetensors, is one new file; again it needs --overwrite.
    default, = export.export_run(workdirs["finished"], format="adapter")
    assert default == os.path.join(workdirs["finished"], "export", "adapter.safetensors")
    assert stat.S_IMODE(os.stat(default).st_mode) == 0o644
    with pytest.raises(outputs.OutputError, match="exists; pass --overwrite"):
      export.export_run(workdirs["finished"], format="adapter")
    assert export.export_run(workdirs["finished"], format="adapter", overwrite=True) == [default]
    assert os.listdir(os.path.dirname(default)) == ["adapter.safetensors"]  # no temporary file left
  finally:
    os.umask(old)
