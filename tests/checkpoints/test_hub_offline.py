"""Offline, a known checkpoint name fails at once with one line saying where to put the file by hand, instead of
huggingface_hub retrying a refused connection for about 30 s over two dozen log lines. No real network is used:
the hub's endpoint is a closed port on this machine."""
import os
import subprocess
import sys
import time

import pytest
from huggingface_hub import constants

from jpeft.checkpoints import CheckpointError, hub
from tests.helpers import REPO

_CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
_NAME = "openai/clip-vit-base-patch16"


@pytest.mark.parametrize("setting,said", [(("ENDPOINT", _CLOSED), "127.0.0.1:9 cannot be reached"),
                                          (("HF_HUB_OFFLINE", True), "HF_HUB_OFFLINE is set")])
def test_unreachable_hub_fails_at_once(monkeypatch, tmp_path, setting, said):
  monkeypatch.setattr(constants, "ENDPOINT", _CLOSED)  # never the real hub, whatever the setting
  monkeypatch.setattr(constants, *setting)
  start = time.time()
  with pytest.raises(CheckpointError, match=f"Cannot download the pretrained checkpoint '{_NAME}' \\({said}"):
    hub.fetch(hub.known_source(_NAME), str(tmp_path))
  assert time.time() - start < 6  # one connection attempt, no retries
  assert not os.listdir(tmp_path)  # nothing half-downloaded


def test_zeroshot_cli_offline_is_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "jpeft.zeroshot", f"--checkpoint={_NAME}", f"--cache_dir={tmp_path}"],
                        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, HF_ENDPOINT=_CLOSED), capture_output=True,
                        text=True, timeout=240)
  assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]
  assert proc.stderr.startswith(f"jpeft.zeroshot: error: Cannot download the pretrained checkpoint '{_NAME}' "
                                "(127.0.0.1:9 cannot be reached"), proc.stderr
