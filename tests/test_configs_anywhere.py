"""Config files load from any directory: the files in configs/ take their base from the installed package and
the demo's backbone resolves inside the package, so neither the working directory nor sys.path needs the
checkout. Both programs run the demo's config by absolute path from a directory outside the checkout."""
import json
import os
import subprocess
import sys

import pytest

from jpeft import cli
from tests.helpers import REPO

DEMO = os.path.join(REPO, "configs", "demo.py")
# One epoch, no comparison run, evaluation and checkpoint at the end: the config path is under test, not training.
SHORT = ["--config.optim.epochs=1", "--config.optim.warmup_epochs=0", "--config.eval_every_epochs=1",
         "--config.checkpoint_every_epochs=1", "--config.compare_methods=()"]


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
  """(cwd, env, tfds dir, site): a working directory outside the checkout, and an environment in which `jpeft`
  is importable as if installed in `site` (PYTHONPATH holds only a link to this checkout's package) but the
  checkout's `configs` is not. The programs this module starts share the tfds dir (the first run generates the
  task there, from outside the checkout) and an XLA compilation cache of their own: the non-editable install's
  demo run computes what the checkout's did, so it loads those programs instead of compiling them again."""
  site = tmp_path_factory.mktemp("site")
  (site / "jpeft").symlink_to(os.path.join(REPO, "jpeft"))
  cwd = tmp_path_factory.mktemp("elsewhere")
  env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu",
             **{cli.COMPILATION_CACHE_ENV: str(tmp_path_factory.mktemp("xla_cache"))})
  probe = subprocess.run([sys.executable, "-c", "import importlib.util, jpeft; "
                          "print(jpeft.__file__, importlib.util.find_spec('configs'))"],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
  assert probe.returncode == 0, probe.stderr
  assert probe.stdout.split() == [os.path.join(str(site), "jpeft", "__init__.py"), "None"]
  return cwd, env, tmp_path_factory.mktemp("tfds"), site


def test_main_runs_the_demo_config_from_outside_the_checkout(outside, tmp_path):
  cwd, env, tfds, site = outside
  workdir = tmp_path / "demo"
  proc = subprocess.run([sys.executable, "-m", "jpeft.main", f"--config={DEMO}", f"--workdir={workdir}",
                         f"--config.data.data_dir={tfds}", *SHORT],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((workdir / "result.json").read_text())
  assert (result["task"], result["method"], result["mode"], result["steps"]) == ("mini_count", "lora", "final",
                                                                                 1000 // 64)
  # The backbone is found where the package is installed, not in the checkout or the working directory.
  assert result["pretrained"] == os.path.join(str(site), "jpeft", "assets", "mini-ViT_8.npz")
  assert not (workdir / "linear").exists()


def test_sweep_runs_the_demo_config_from_outside_the_checkout(outside, tmp_path):
  cwd, env, tfds, _ = outside
  workdir = tmp_path / "sweep"
  proc = subprocess.run([sys.executable, "-m", "jpeft.sweep", f"--config={DEMO}", f"--workdir={workdir}",
                         f"--config.data.data_dir={tfds}", *SHORT, "--methods=linear", "--grid.lr=1e-2",
                         "--grid.wd=1e-4", "--grid.seeds=42", "--nofinal"],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in (workdir / "trials.jsonl").read_text().splitlines()]
  assert [(r["task"], r["method"]) for r in rows] == [("mini_count", "linear")]


def _pip_install_target(target) -> None:
  """A non-editable `pip install --no-deps --target=target` of this checkout (what a user's `pip install` puts
  in site-packages, jpeft's dependencies aside); skipped only when pip cannot build without a package index."""
  try:
    import wheel  # pylint: disable=g-import-not-at-top,unused-import
    isolation = ["--no-build-isolation"]  # setuptools and wheel are here: no index needed
  except ImportError:
    isolation = []  # pip fetches them into an isolated build environment
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation,
                         f"--target={target}", REPO], capture_output=True, text=True, timeout=300)
  if proc.returncode != 0 and not isolation and "No matching distribution" in proc.stderr:
    pytest.skip("pip cannot build the package here: setuptools/wheel are not installed and no index is reachable")
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_shipped_config_is_named_after_a_non_editable_install(outside, tmp_path):
  _, outside_env, tfds, _ = outside
  site = tmp_path / "site"
  _pip_install_target(site)
  assert (site / "jpeft" / "configs" / "vtab_lora.py").is_file()  # configs/ installs as jpeft.configs
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  env = dict(outside_env, PYTHONPATH=str(site))  # the installed copy alone; the module's tfds dir and XLA cache
  workdir = tmp_path / "demo"
  proc = subprocess.run([sys.executable, "-m", "jpeft.main", "--config=demo", f"--workdir={workdir}",
                         f"--config.data.data_dir={tfds}", *SHORT],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((workdir / "result.json").read_text())
  assert (result["task"], result["method"]) == ("mini_count", "lora")
  assert result["pretrained"] == os.path.join(str(site), "jpeft", "assets", "mini-ViT_8.npz")
  # A name jpeft does not ship: one line naming it and some names that exist.
  proc = subprocess.run([sys.executable, "-m", "jpeft.main", "--config=vtab_nosuchmethod"], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1 and "--config=vtab_nosuchmethod: no such file" in proc.stderr
  assert "clip_imagenet" in proc.stderr


def test_config_names_resolve_in_a_checkout_and_a_real_file_wins(tmp_path, monkeypatch):
  shipped = os.path.join(REPO, "configs", "vtab_lora.py")
  assert cli.resolve_config_path("vtab_lora") == shipped
  assert cli.resolve_config_path("vtab_lora.py:x") == shipped + ":x"
  assert "vtab_lora" in cli.shipped_config_names() and "demo" in cli.shipped_config_names()
  monkeypatch.chdir(tmp_path)
  assert cli.resolve_config_path("configs/vtab_lora.py") == shipped  # the README's form, outside a checkout
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "vtab_lora.py").write_text("")
  assert cli.resolve_config_path("configs/vtab_lora.py") == "configs/vtab_lora.py"  # the user's own file
  assert cli.resolve_config_path("elsewhere/vtab_lora.py") == "elsewhere/vtab_lora.py"
  assert cli.resolve_config_path("nosuch") == "nosuch"
