"""`--trial_batch=auto`: how many trials of a shape group one compiled program holds, from XLA's memory analysis.

A sweep's vmapped train step needs, per device, a part that does not grow with the trials (the shared frozen
backbone, the program's fixed temporaries) and a part per trial (its trainable parameters, AdamW moments,
activations and gradients). `GroupRunner.fit_trial_batch` compiles the step (without running it) for one and for
two trials per device, reads `compiled.memory_analysis()` of each, and `fit` extrapolates linearly:

  bytes(k trials per device) = fixed + k * per_trial,  per_trial = bytes(2) - bytes(1),
  fixed = max(bytes(1) - per_trial, 0)

and takes the largest k with bytes(k) <= budget: SAFETY of the device's memory limit (`memory_stats()
['bytes_limit']` on GPU/TPU) less what else is in use there, or on a CPU SAFETY of the host's available memory
shared by its XLA devices. The count is capped by the largest chunk the group has (no padding beyond it).
Eval steps run forward only on the same batch size, so the train step is the peak this budgets for.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import jax
import numpy as np
from absl import flags

from jpeft.train.errors import ConfigError

AUTO = "auto"
SAFETY = 0.85  # of the memory limit: XLA's estimate leaves out allocator fragmentation and runtime buffers


def trial_batch_error(value) -> ConfigError:
  return ConfigError(f"--trial_batch={value!r} is not usable: expected a positive integer, the number of trials "
                     "trained together (lower it if a chunk does not fit in memory), or 'auto' (as many as fit in "
                     "the device's memory).")


def parse_trial_batch(text: str) -> int | str:
  """A --trial_batch flag's text: 'auto' or a positive integer; ConfigError naming the value otherwise."""
  if text == AUTO:
    return AUTO
  if not text.strip().isdigit() or int(text) < 1:
    raise trial_batch_error(text)
  return int(text)


def program_bytes(analysis) -> int:
  """Per-device bytes of a compiled program at its peak: arguments + outputs - donated (aliased) + temporaries."""
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes
             + analysis.temp_size_in_bytes)


def _host_available_bytes() -> int:
  """The host's available memory (MemAvailable; without /proc, free pages)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_budget(devices: Sequence[jax.Device], resident_bytes: int) -> tuple[int, str]:
  """(bytes one device may give the step, how that was found) for a program over `devices`.

  `resident_bytes`: what the program's arguments already hold on each device (the frozen backbone, placed before
  the fit), counted by the memory analysis and so not taken from the budget twice.
  """
  stats = devices[0].memory_stats() or {}
  if "bytes_limit" in stats:
    limit, in_use = int(stats["bytes_limit"]), int(stats.get("bytes_in_use", 0))
    budget = int(SAFETY * limit) - max(in_use - resident_bytes, 0)
    return budget, (f"{SAFETY:.0%} of {devices[0].device_kind}'s {limit / 2**30:.1f} GiB limit less "
                    f"{max(in_use - resident_bytes, 0) / 2**30:.2f} GiB in use by other buffers")
  available = _host_available_bytes()
  budget = int(SAFETY * available / len(devices)) + resident_bytes
  return budget, (f"{SAFETY:.0%} of the host's {available / 2**30:.1f} GiB available"
                  + (f", split over {len(devices)} CPU devices" if len(devices) > 1 else ""))


def mib(n: int) -> str:
  """Bytes as MiB, to 2 decimals below 100 MiB (tiny models) and whole above."""
  return f"{n / 2**20:,.0f} MiB" if abs(n) >= 100 * 2**20 else f"{n / 2**20:,.2f} MiB"


@dataclasses.dataclass(frozen=True)
class Fit:
  """What `fit` chose. count: trials per program (capped); room: trials that fit the budget (uncapped, a multiple
  of the devices; 0 when even one trial per device exceeds it: the sweep then still tries one per device); line:
  the choice and why, for the log."""
  count: int
  room: int
  line: str


def fit(bytes_one: int, bytes_two: int, budget: int, cap: int, devices: int = 1, budget_source: str = "") -> Fit:
  """Trials per program from the step's per-device bytes at one and two trials per device.

  Args:
    bytes_one, bytes_two: `program_bytes` of the step compiled for `devices` and 2 * `devices` trials.
    budget: bytes one device may use (`device_budget`).
    cap: the most trials a chunk has (no point in more).
    devices: devices the trial axis is split over (counts are multiples of it, rounded down to `cap`).
    budget_source: how the budget was found, for the line.
  """
  per_trial = max(bytes_two - bytes_one, 1)
  # Buffer assignment is not exactly linear: an extrapolated negative shared part (tiny models) counts as 0,
  # which overestimates (bytes(1) <= per_trial then), never under.
  fixed = max(bytes_one - per_trial, 0)
  per_device = (budget - fixed) // per_trial
  count = min(max(per_device, 1) * devices, cap)
  why = (f"{mib(per_trial)} per trial + {mib(fixed)} shared per device (XLA's memory analysis of the train step), "
         f"budget {mib(budget)} per device ({budget_source or 'given'})")
  if per_device < 1:
    return Fit(count, 0, f"--trial_batch=auto: {count} (even one trial per device exceeds the budget: "
                             f"{why}; lower the batch size or set --config.model.remat=True if it fails)")
  limit = "all the group's trials" if count == cap and per_device * devices > cap else "as many as fit"
  trials = f"{count} trial{'s' * (count > 1)}"
  return Fit(count, per_device * devices,
             f"--trial_batch=auto: {trials} per program ({limit}; room for {per_device * devices}): {why}")


def choose(runner, cap: int, log) -> int:
  """The trials per program for `runner`'s group (a `GroupRunner`), fitted once per runner (the tune and final
  stages share it) and capped by `cap`; logs the choice when it is first made."""
  if runner.fitted is None:
    fitted = runner.fit_trial_batch(cap)
    if jax.process_count() > 1:  # the processes train the same chunks in lockstep: process 0's choice for all
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      count, room = (int(x) for x in multihost_utils.broadcast_one_to_all(np.int32([fitted.count, fitted.room])))
      fitted = dataclasses.replace(fitted, count=count, room=room)
    runner.fitted = fitted
    log(fitted.line)
  return min(cap, max(runner.fitted.room, runner.fitted.count))


def abstract_like(tree, sharding: Optional[jax.sharding.Sharding] = None):
  """Shape/dtype stand-ins of `tree` (with `sharding`), for lowering without allocating."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class _TrialBatchParser(flags.ArgumentParser):
  """absl parser of --trial_batch: a positive integer or 'auto'."""

  def parse(self, argument):
    try:
      return parse_trial_batch(str(argument))
    except ConfigError as e:
      raise ValueError(str(e)) from None

  def flag_type(self) -> str:
    return "int or 'auto'"


def define_trial_batch_flag(default: int = 8, help_text: str = "Trials trained together in one compiled program") \
    -> flags.FlagHolder:
  """The --trial_batch flag of the sweep programs: a positive integer, or 'auto' (see the module docstring)."""
  return flags.DEFINE(_TrialBatchParser(), "trial_batch", default,
                      f"{help_text}; 'auto': as many as fit in the device's memory (XLA's memory analysis of the "
                      "train step at 1 and 2 trials, extrapolated; the choice is printed).")
