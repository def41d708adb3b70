"""Imports TensorFlow without the INFO lines its C++ start-up writes to stderr.

Importing TensorFlow prints "WARNING: All log messages before absl::InitializeLog() is called
are written to STDERR", "I... port.cc] oneDNN custom operations are on ..." (twice) and CPU
feature notices, which would open the output of every jpeft command. TF_CPP_MIN_LOG_LEVEL=1 hides
the CPU notices but not the oneDNN ones (they are logged through absl before TF reads that
variable), so the first import also runs with file descriptor 2 captured; INFO lines are dropped
and everything else it wrote (warnings, errors) is written back. TF_CPP_MIN_LOG_LEVEL=0 (INFO
wanted) filters nothing; unset, it becomes 1, as JAX's own import also sets it.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

_LOG_LEVEL_VAR = 'TF_CPP_MIN_LOG_LEVEL'
# absl's pre-initialisation notice and absl/glog INFO records ("I1129 20:09:26.5 ...",
# "I0000 00:00:17.9 ..."): the lines TF_CPP_MIN_LOG_LEVEL=1 means to hide.
_INFO_LINE = re.compile(
    rb'^(WARNING: All log messages before absl::InitializeLog\(\) is called|I\d{4} \d\d:\d\d:\d\d)')


def drop_info_lines(text: bytes) -> bytes:
  """`text` (what TensorFlow's import wrote to stderr) without its INFO lines."""
  return b''.join(line for line in text.splitlines(keepends=True) if not _INFO_LINE.match(line))


def import_tensorflow() -> None:
  """Imports TensorFlow, without its INFO lines unless TF_CPP_MIN_LOG_LEVEL=0 (see module doc)."""
  info_wanted = os.environ.setdefault(_LOG_LEVEL_VAR, '1') == '0'
  if 'tensorflow' in sys.modules or info_wanted:
    importlib.import_module('tensorflow')
    return
  sys.stderr.flush()
  saved_fd = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      importlib.import_module('tensorflow')
    finally:
      sys.stderr.flush()
      os.dup2(saved_fd, 2)
      os.close(saved_fd)
      captured.seek(0)
      os.write(2, drop_info_lines(captured.read()))


class _LazyModule:
  """Stands for a module imported at its first attribute access, so that importing jpeft (and the paths that
  never read data through TensorFlow: in-memory arrays, benchmarks, a device without TensorFlow) does not import
  TensorFlow. `import_tensorflow` runs first (its INFO lines dropped)."""

  def __init__(self, name: str):
    self._name = name

  def __getattr__(self, attr: str):
    import_tensorflow()
    return getattr(importlib.import_module(self._name), attr)

  def __repr__(self) -> str:
    return f'<lazy module {self._name!r}>'


tf = _LazyModule('tensorflow')
tfds = _LazyModule('tensorflow_datasets')
