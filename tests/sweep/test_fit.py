"""--trial_batch=auto (issue 31.3b): the count from a (fake) memory analysis and budget, and a tiny real sweep."""
import json
import os
import types

import pytest

from .conftest import load_config, tiny_overrides
from jpeft import config_base
from jpeft.sweep import fit, grid, protocol
from jpeft.train.errors import ConfigError

MIB = 2**20


def test_program_bytes_counts_donated_buffers_once():
  analysis = types.SimpleNamespace(argument_size_in_bytes=700, output_size_in_bytes=200, alias_size_in_bytes=150,
                                   temp_size_in_bytes=1000)
  assert fit.program_bytes(analysis) == 700 + 200 - 150 + 1000


@pytest.mark.parametrize("budget,cap,devices,count,room", [
    (1000 + 5 * 100, 8, 1, 5, 5),     # fixed 1000 + 5 trials of 100 fit exactly
    (1000 + 5 * 100 + 99, 8, 1, 5, 5),  # not a sixth
    (1000 + 5 * 100, 3, 1, 3, 5),     # capped by the group's largest chunk
    (1000 + 5 * 100, 16, 2, 10, 10),  # per device: 2 devices hold twice as many
    (1000 + 5 * 100, 7, 2, 7, 10),
    (1050, 8, 1, 1, 0),               # not even one fits: one is tried, and the line says so
])
def test_fit_extrapolates_per_trial_bytes_linearly(budget, cap, devices, count, room):
  # one trial per device: 1100 bytes, two: 1200 -> 100 per trial on top of 1000 shared
  chosen = fit.fit(1100, 1200, budget, cap, devices, "test budget")
  assert (chosen.count, chosen.room) == (count, room)
  assert chosen.line.startswith(f"--trial_batch=auto: {count}")
  assert "test budget" in chosen.line
  assert ("exceeds the budget" in chosen.line) == (room == 0)


def test_a_negative_extrapolated_shared_part_counts_as_zero():
  # 100 bytes at one trial, 300 at two: 200 per trial and -100 shared, which would let (999 + 100) // 200 = 5
  # trials into 999 bytes; counted as 0, 4 fit (5 only in 1000).
  assert fit.fit(100, 300, 999, 8).room == 4
  assert fit.fit(100, 300, 1000, 8).room == 5


def test_fit_line_names_bytes_per_trial_and_budget():
  line = fit.fit(1000 * MIB + 300 * MIB, 1000 * MIB + 600 * MIB, 4000 * MIB, 64, 1, "85% of x").line
  assert line == ("--trial_batch=auto: 10 trials per program (as many as fit; room for 10): 300 MiB per trial + "
                  "1,000 MiB shared per device (XLA's memory analysis of the train step), budget 4,000 MiB per "
                  "device (85% of x)")


class _Device:
  device_kind = "Fake GPU"

  def __init__(self, stats):
    self._stats = stats

  def memory_stats(self):
    return self._stats


def test_device_budget_on_an_accelerator_and_on_cpu(monkeypatch):
  """GPU/TPU: SAFETY of bytes_limit less the other buffers in use (the resident frozen weights are counted by the
  analysis, not twice); CPU: SAFETY of the host's available memory over its devices, plus the resident bytes."""
  budget, source = fit.device_budget([_Device({"bytes_limit": 1000 * MIB, "bytes_in_use": 300 * MIB})], 100 * MIB)
  assert budget == int(fit.SAFETY * 1000 * MIB) - 200 * MIB and "Fake GPU" in source
  monkeypatch.setattr(fit, "_host_available_bytes", lambda: 800 * MIB)
  budget, source = fit.device_budget([_Device(None), _Device(None)], 10 * MIB)
  assert budget == int(fit.SAFETY * 400 * MIB) + 10 * MIB and "split over 2 CPU devices" in source


@pytest.mark.parametrize("text,value", [("auto", "auto"), ("4", 4), ("0", None), ("x", None), ("-1", None)])
def test_parse_trial_batch(text, value):
  if value is None:
    with pytest.raises(ConfigError, match=f"--trial_batch='{text}' is not usable"):
      fit.parse_trial_batch(text)
  else:
    assert fit.parse_trial_batch(text) == value


def test_a_sweep_with_auto_chunks_as_the_memory_analysis_allows(folder_root, tmp_path, monkeypatch):
  """The real train step's memory analysis at 1 and 2 trials, with a budget one byte short of two trials: the 2
  trials of the group (default 8 per program) run one per program, and the choice is logged once for the group."""
  measured = []

  def one_trial_fits(bytes_one, bytes_two, budget, cap, devices, source):
    measured.append((bytes_one, bytes_two))
    return real_fit(bytes_one, bytes_two, bytes_two - 1, cap, devices, "one trial")

  real_fit = fit.fit
  monkeypatch.setattr(fit, "fit", one_trial_fits)
  config = load_config(dict(tiny_overrides(folder_root), **{"optim.epochs": 1}))
  lines = []
  workdir = str(tmp_path / "sweep")
  g = config_base.apply_overrides(grid.default_grid(), {"lr": (1e-3, 3e-2), "wd": (1e-4,), "seeds": (42,)})
  protocol.run_sweep(config, ["dtd"], ["linear"], g, workdir, "auto", final=False, log=lines.append)
  (bytes_one, bytes_two), = measured
  assert bytes_two > bytes_one > 0  # a trial's state and activations cost memory
  assert [l for l in lines if l.startswith("--trial_batch=auto")] == [
      f"--trial_batch=auto: 1 trial per program (as many as fit; room for 1): "
      f"{fit.mib(bytes_two - bytes_one)} per trial + {fit.mib(max(2 * bytes_one - bytes_two, 0))} shared per "
      f"device (XLA's memory analysis of the train step), budget {fit.mib(bytes_two - 1)} per device (one trial)"]
  with open(os.path.join(workdir, "trials.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["chunk_trials"] for r in rows] == [1, 1]
