"""Writes docs/reference/cli.md: every `python -m jpeft.<program>` with its module docstring (what it does, its
usage lines), read from the source without importing it.

  python docs/gen_cli_reference.py      # rewrites docs/reference/cli.md
tests/docs/test_docs_build.py checks that the committed page equals this script's output, so a changed docstring
or a new program without a page fails there.
"""
import ast
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
OUT = os.path.join(DOCS, "reference", "cli.md")


def programs() -> list[tuple[str, str]]:
  """(module name, source path) of every jpeft module runnable with `python -m` (an `__main__.py`, or a module
  that calls absl's `app.run` under `if __name__ == "__main__"`), sorted with jpeft.main first."""
  found = []
  for root, _, files in os.walk(os.path.join(REPO, "jpeft")):
    for name in files:
      path = os.path.join(root, name)
      if not name.endswith(".py"):
        continue
      text = open(path).read()
      if name == "__main__.py" or ('if __name__ == "__main__"' in text and "app.run(" in text):
        module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__main__")
        found.append((module, path))
  return sorted(found, key=lambda mp: (mp[0] != "jpeft.main", mp[0]))


HEADER = """# Command lines

Every program is `python -m <module>` with absl flags; `--help` lists a program's own flags and `--helpfull` every
flag, `--config.<field>=` included. The programs that take `--config` accept a config file's path or the name of a
shipped one (`--config=vtab_lora`); bad input ends in one line naming it and exit status 1. Generated from each
module's docstring by `python docs/gen_cli_reference.py`.
"""

FOOTER = """
## Experiment scripts

`experiments/*.py` are scripts of the repository (not installed with the package); run them from a clone. Each
writes its results under the folder it is given; what they produced is on the results pages.

| script | what |
|---|---|
| `mini_study.py` | the offline mini study: every method on every Mini VTAB task through the sweep engine |
| `halving_report.py` | successive halving against the full protocol: setting selected and trial-epochs spent |
| `many_shot.py` | methods x training-set sizes with the study's many-shot protocol, and LoRA's accuracy against rank |
| `pretrain_mini.py` | pre-trains the shipped mini backbone, in two stages |
| `probe_mini.py` | linear probes of mini backbones on every Mini VTAB task |
| `bench_sweep.py` | N trials vmapped against the same N one after another |
| `bench_vs_timm.py` | jpeft's train step against timm's, side by side (torch and timm optional) |
| `profile_vs_timm.py` | where both steps spend their time, per op kind |
| `matmul_bound.py` | the step's matmul-bound limit per framework |
| `cpu_levers.py`, `attention_variants.py`, `onednn_check.py` | CPU speed levers tried ([performance](../results/performance.md)) |
"""


def render() -> str:
  parts = [HEADER]
  for module, path in programs():
    doc = ast.get_docstring(ast.parse(open(path).read())) or ""
    parts.append(f"## `python -m {module}`\n\n```text\n{doc.strip()}\n```\n")
  return "\n".join(parts) + FOOTER


if __name__ == "__main__":
  with open(OUT, "w") as f:
    f.write(render())
  print(f"wrote {OUT}", file=sys.stderr)
