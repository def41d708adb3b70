"""The code blocks of README.md and docs/: extraction and the marker convention (see docs/development.md).

A fenced block whose language is `bash` or `python` is an example. It runs in tests/docs/test_examples.py, unless
the line before it is a marker `<!-- needs: <what>; twin: <where> -->` (network, accelerator, cluster, time, ...)
naming its offline twin: a docs page (path relative to docs/) or the same page (`above`, `below`) holding an
example that runs, a test file or folder under tests/, or a notebook under notebooks/ (CI runs each). `<!-- ci: ... -->` marks the README's test command,
which CI runs (.ci/run). `text` (output), `json`, `yaml` and `toml` blocks are shown and never run; any
other fence (none, `console`) is refused, so that no command escapes the check.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(REPO, "docs")
MARKER = re.compile(r"^<!--\s*(needs|ci):\s*(.*?)\s*-->$")
LANGUAGES = ("bash", "python")
SHOWN = ("text", "json", "yaml", "toml")  # output and data: shown, never run


@dataclasses.dataclass
class Block:
  path: str  # relative to the repository
  line: int  # of the opening fence, 1-based
  language: str
  code: str
  marker: Optional[tuple[str, str]]  # ('needs' | 'ci', the rest)

  @property
  def runs(self) -> bool:
    return self.language in LANGUAGES and self.marker is None

  def __str__(self) -> str:
    return f"{self.path}:{self.line}"


def nav_order() -> list[str]:
  """README.md, then the docs pages in mkdocs.yml's nav order (so a page's examples can use an earlier page's
  runs, e.g. runs/demo_short)."""
  pages = re.findall(r":\s*([\w/-]+\.md)\s*$", open(os.path.join(REPO, "mkdocs.yml")).read(), re.M)
  return ["README.md"] + [os.path.join("docs", p) for p in pages]


def all_pages() -> list[str]:
  """Every Markdown file of README.md and docs/ (not the experiments' records linked under docs/figures)."""
  found = []
  for root, dirs, files in os.walk(DOCS):
    dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    found += [os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith(".md")]
  return ["README.md"] + sorted(found)


def blocks(path: str) -> list[Block]:
  lines = open(os.path.join(REPO, path)).read().split("\n")
  out, i = [], 0
  while i < len(lines):
    fence = re.match(r"^```(\w*)\s*$", lines[i])
    if fence:
      start, j = i, i + 1
      while j < len(lines) and lines[j].rstrip() != "```":
        j += 1
      above = lines[start - 1].strip() if start else ""
      match = MARKER.match(above)
      out.append(Block(path, start + 1, fence.group(1), "\n".join(lines[start + 1:j]),
                       (match.group(1), match.group(2)) if match else None))
      i = j + 1
    else:
      i += 1
  return out


def indented_code(path: str) -> list[int]:
  """Lines that open a 4-space indented code block (which would escape this test): a line indented by 4 or more
  after a blank line, outside fences and list items."""
  lines = open(os.path.join(REPO, path)).read().split("\n")
  bad, fenced, in_list = [], False, False
  for i, line in enumerate(lines):
    if line.startswith("```"):
      fenced = not fenced
      continue
    if fenced:
      continue
    if re.match(r"^\s*([-*]|\d+\.)\s", line):
      in_list = True
    elif line and not line.startswith(" "):
      in_list = False
    if line.startswith("    ") and i and not lines[i - 1].strip() and not in_list:
      bad.append(i + 1)
  return bad


def twin_problem(block: Block, page_blocks: list[Block]) -> Optional[str]:
  """Why `block`'s marker does not name a usable offline twin, or None."""
  kind, rest = block.marker
  if kind == "ci":
    return None
  twin = re.search(r"twin:\s*(.+)$", rest)
  if not twin:
    return "its marker names no offline twin ('; twin: <page, above/below, or tests/...>')"
  where = twin.group(1).strip()
  words = where.replace(",", " ").split()
  tests = [w for w in words if w.startswith(("tests/", "notebooks/"))]
  if tests:  # a test, or a notebook (tests/test_notebooks.py runs each), that exercises the same path offline
    missing = [w for w in tests if not os.path.exists(os.path.join(REPO, w))]
    return f"its twin {missing[0]} does not exist" if missing else None
  for word in words:
    if word.endswith(".md"):
      page = os.path.join("docs", word)
      if not os.path.exists(os.path.join(REPO, page)):
        return f"its twin page {word} does not exist"
      return None if any(b.runs for b in blocks(page)) else f"its twin page {word} has no example that runs"
  if any(b.runs for b in page_blocks):
    return None
  return f"its twin '{where}' is on the same page, which has no example that runs"
