"""Every command and Python example in README.md and docs/ either runs here, offline on the CPU, or is marked as
needing the network, an accelerator, a cluster or hours, with an offline twin (tests/docs/examples.py has the
convention). The runnable ones run in page order in one working directory, so later pages reuse earlier runs
(the shortened demo's `runs/demo_short` feeds the export and WiSE-FT examples), with one compilation cache."""
import itertools
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Optional

import pytest

from tests import helpers
from tests.docs import examples

REPO = examples.REPO


def test_every_example_runs_or_names_its_offline_twin():
  problems = []
  for page in examples.all_pages():
    page_blocks = examples.blocks(page)
    for block in page_blocks:
      if block.language in examples.LANGUAGES and block.marker:
        problem = examples.twin_problem(block, page_blocks)
        if problem:
          problems.append(f"{block}: {problem}")
      elif block.language not in examples.LANGUAGES + examples.SHOWN:
        problems.append(f"{block}: fence language '{block.language or 'none'}' (commands: bash; code: python; "
                        f"output and data: {', '.join(examples.SHOWN)}; a console session: split it into bash + text)")
  assert not problems, "\n".join(problems)


def test_no_indented_code_blocks_escape_the_check():
  bad = {page: lines for page in examples.all_pages() if (lines := examples.indented_code(page))}
  assert not bad, f"indented code blocks (use fenced ```bash / ```python / ```text): {bad}"


def test_every_page_with_examples_is_in_the_nav():
  order = examples.nav_order()
  missing = [p for p in examples.all_pages() if p not in order and any(b.runs for b in examples.blocks(p))]
  assert not missing, f"pages whose examples would not run (add them to mkdocs.yml's nav): {missing}"


def test_ci_installs_and_tests_as_the_readme_says():
  first, second = [b for b in examples.blocks("README.md") if b.language == "bash"][:2]
  readme = open(os.path.join(REPO, "README.md")).read().split("\n")
  fences = [i for i, line in enumerate(readme) if line.startswith("```bash")]
  assert fences[0] < 10 and fences[1] < 16, "the README must open with the demo and test commands"
  setup, demo = first.code.rsplit(" && ", 1)
  assert demo == "python -m jpeft.main --config=configs/demo.py"
  ci = open(os.path.join(REPO, ".ci", "run")).read().split("\n")
  install = [c for c in setup.split(" && ") if c.startswith("pip install")]
  assert install and all(c in ci for c in install), (install, ci)
  assert second.code in ci and second.marker[0] == "ci"


def _readme_demo_output() -> list[str]:
  text = open(os.path.join(REPO, "README.md")).read()
  block = re.search(r"```text\n(mini_count test accuracy:.*?)\n```", text, re.S)
  return block.group(1).split("\n")


def _shape(line: str) -> str:
  """A printed line with its numbers, paths in parentheses and run names abstracted."""
  line = re.sub(r"\(/[^)]*\)", "(PATH)", line)
  line = re.sub(r"runs/[\w/]+?/", "runs/RUN/", line)
  return re.sub(r"\d+(\.\d+)?", "N", line)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mini_count_data_dir):
  cwd = tmp_path_factory.mktemp("examples")
  # Examples read the repository's configs and committed results (a packed sweep) as from a clone's root.
  for name in ("configs", "experiments", "tests"):
    (cwd / name).symlink_to(os.path.join(REPO, name))
  env = dict(os.environ, JAX_PLATFORMS="cpu", TFDS_DATA_DIR=mini_count_data_dir,
             JPEFT_COMPILATION_CACHE=str(tmp_path_factory.mktemp("xla")),
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  return cwd, env


def _as_program(block) -> Optional[list[str]]:
  """The arguments after `python` when the block is Python code or one `python ...` command line without shell
  syntax, which tests.helpers.run_programs runs as that program; None for other shell code (run by bash)."""
  if block.language == "python":
    return ["-c", block.code]
  if "\n" not in block.code.strip() and not re.search(r"[|&;<>$`\\(){}*?]", block.code):
    words = shlex.split(block.code)
    if words[0] == "python":
      return words[1:]
  return None


def test_runnable_examples_run(workspace):
  cwd, env = workspace
  seen, runnable = set(), []
  for page in examples.nav_order():
    for block in examples.blocks(page):
      if block.runs and block.code not in seen:
        seen.add(block.code)
        runnable.append(block)
  timings, outputs, i = [], {}, 0
  while i < len(runnable):
    # Consecutive Python examples and python command lines run in one child that imports JAX and TensorFlow once
    # (each still its own program: own argv, globals, flags, exit code); other shell code runs in bash.
    batch = list(itertools.takewhile(lambda b: _as_program(b) is not None, runnable[i:])) or [runnable[i]]
    start = time.time()
    if _as_program(batch[0]) is None:
      procs = [subprocess.run(["bash", "-euo", "pipefail", "-c", batch[0].code], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)]
    else:
      procs = helpers.run_programs([_as_program(b) for b in batch], cwd=str(cwd), env=env,
                                   timeout=600 * len(batch))
    timings.append(f"{time.time() - start:6.1f} s  {', '.join(map(str, batch))}")
    if len(batch) > 1:
      timings.extend(f"  {proc.seconds:6.1f} s  {block}" for block, proc in zip(batch, procs))
    for block, proc in zip(batch, procs):
      assert proc.returncode == 0, f"{block} failed:\n{block.code}\n{proc.stderr[-3000:]}"
      outputs[block.code] = proc.stdout
    i += len(batch)
  print("\n".join(timings))
  # The README's demo output has the shape the demo prints (its shortened run's last three lines).
  short = next(code for code in outputs if "--workdir=runs/demo_short" in code and "jpeft.main" in code)
  assert [_shape(x) for x in outputs[short].splitlines()[-3:]] == [_shape(x) for x in _readme_demo_output()]


def test_readme_methods_table_lists_every_registered_method():
  from jpeft import peft  # pylint: disable=import-outside-toplevel
  text = open(os.path.join(REPO, "README.md")).read()
  table = text.split("## Methods", 1)[1].split("\n\n", 2)[1]
  listed = set(re.findall(r"`(\w+)`", table))
  assert listed == set(peft.registry()), (sorted(set(peft.registry()) - listed), sorted(listed - set(peft.registry())))
  assert f"{len(peft.registry())} methods" in text
