"""The documentation builds (`mkdocs build --strict`: a broken link or a missing API object fails it), its
generated reference pages are current, and the config reference names every field."""
import dataclasses
import os
import subprocess
import sys

from tests.helpers import load_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(REPO, "docs")


def test_mkdocs_build_strict(tmp_path):
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()
  # mkdocstrings rendered the API (a missing object would have failed the build).
  assert "finetune" in (tmp_path / "site" / "reference" / "api" / "index.html").read_text()


def test_cli_reference_is_current():
  gen = load_module(os.path.join("docs", "gen_cli_reference.py"))
  with open(gen.OUT) as f:
    assert f.read() == gen.render(), "docs/reference/cli.md is stale: run python docs/gen_cli_reference.py"
  assert "jpeft.main" in [m for m, _ in gen.programs()]


def test_methods_reference_has_every_method_with_its_defaults_and_grid():
  from jpeft import peft  # pylint: disable=import-outside-toplevel
  with open(os.path.join(DOCS, "reference", "methods.md")) as f:
    sections = {s.split("`", 1)[0]: s for s in f.read().split("\n## `")[1:]}
  assert set(sections) == set(peft.registry()), "run python docs/gen_methods_reference.py"
  for name, cls in peft.registry().items():
    fields = [f for f in dataclasses.fields(cls) if f.name != "name"]
    defaults = ", ".join(f"`{f.name}={f.default!r}`" for f in fields) or "none"
    grid = ", ".join(f"`{k}` {tuple(v)}" for k, v in cls.grid.items()) or "lr x wd only"
    assert f"- defaults: {defaults}\n" in sections[name], f"{name}: run python docs/gen_methods_reference.py"
    assert f"- grid: {grid}\n" in sections[name], f"{name}: run python docs/gen_methods_reference.py"


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield prefix + key


def test_config_reference_names_every_field():
  from jpeft import config_base  # pylint: disable=import-outside-toplevel
  with open(os.path.join(DOCS, "reference", "config.md")) as f:
    page = f.read()
  fields = set(_leaves(config_base.get_config("lora"))) | set(_leaves(config_base.demo_config())) - {"peft.lora"}
  fields = {f for f in fields if not f.startswith("peft.")}
  # A row names a field as `a.b` (or groups siblings: `optim.lr_mult.head`, `.peft`, `.backbone`).
  missing = [f for f in sorted(fields) if f"`{f}`" not in page and f"`.{f.rsplit('.', 1)[-1]}`" not in page]
  assert not missing, f"docs/reference/config.md lacks {missing}"


def test_readme_is_a_landing_page():
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 170
  for target in ("LICENSE", "docs/index.md", "docs/reference/methods.md"):
    assert f"]({target})" in readme and os.path.exists(os.path.join(REPO, target))
  for link in __import__("re").findall(r"\]\(((?:docs|notebooks)/[^)#]*)", readme):
    assert os.path.exists(os.path.join(REPO, link)), link
