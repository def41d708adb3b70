"""Every program reports a user's mistake in one line and exits 1: a misspelt config or grid field (with the
installed ml_collections' own exception underneath) and a config value the run cannot use (jpeft.bench.*)."""
import os

import pytest

from jpeft import cli, config_base
from jpeft.sweep import grid as grid_lib
from tests import helpers


@pytest.mark.parametrize("name,override,line", [
    ("config", "optim.lrr", "--config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    ("config", "optimm.lr", "--config.optimm.lr: the config has no field 'optimm'; did you mean 'optim'?"),
    ("config", "optim.lr_mult.hed", "--config.optim.lr_mult.hed: optim.lr_mult has no field 'hed'; did you mean "
     "'head'?"),
    ("config", "optim.zzz", "--config.optim.zzz: optim has no field 'zzz'; its fields are b1, b2, batch_size, "),
    ("config", "optim.lr.x", "--config.optim.lr.x: optim.lr is a float, not a group of fields"),
    ("grid", "lrr", "--grid.lrr: the grid has no field 'lrr'; did you mean 'lr'?"),
])
def test_unknown_field_names_the_flag_the_group_and_the_nearest_field(name, override, line):
  config = grid_lib.default_grid() if name == "grid" else config_base.get_config("lora")
  assert cli.unknown_field(config, name, override).startswith(line)


def test_known_fields_are_not_reported():
  assert cli.unknown_field(config_base.get_config("lora"), "config", "optim.lr_mult.head") is None


_DEMO = "--config=configs/demo.py"

MISSPELT = [
    (["-m", "jpeft.main", _DEMO, "--config.optim.lrr=1e-3"],
     "jpeft: error: --config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    (["-m", "jpeft.main", _DEMO, "--config.optimm.lr=1"],
     "jpeft: error: --config.optimm.lr: the config has no field 'optimm'; did you mean 'optim'?"),
    (["-m", "jpeft.sweep", _DEMO, "--workdir=WORKDIR", "--config.optim.lrr=1e-3"],
     "jpeft.sweep: error: --config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    (["-m", "jpeft.sweep", _DEMO, "--workdir=WORKDIR", "--grid.lrr=1e-3"],
     "jpeft.sweep: error: --grid.lrr: the grid has no field 'lrr'; did you mean 'lr'?"),
    (["-m", "jpeft.bench.step", _DEMO, "--config.optim.lrr=1e-3"],
     "jpeft.bench.step: error: --config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    (["-m", "jpeft.bench.memory", _DEMO, "--config.optimm.lr=1"],
     "jpeft.bench.memory: error: --config.optimm.lr: the config has no field 'optimm'; did you mean 'optim'?"),
    (["-m", "jpeft.bench.profile", _DEMO, "--config.optim.lrr=1e-3"],
     "jpeft.bench.profile: error: --config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    # many_shot loads its default config file, with the overrides, as the flag is defined (at import).
    (["experiments/many_shot.py", "--config.optim.lrr=1e-3"],
     "many_shot: error: --config.optim.lrr: optim has no field 'lrr'; did you mean 'lr'?"),
    (["experiments/mini_study.py", "--grid.lrr=1e-3"],
     "mini_study: error: --grid.lrr: the grid has no field 'lrr'; did you mean 'lr'?"),
]

UNUSABLE = [
    (["-m", "jpeft.bench.step", _DEMO, "--config.optim.warmup_epochs=1000"],
     "jpeft.bench.step: error: Config field 'optim.warmup_epochs' = 1000 is not usable"),
    (["-m", "jpeft.bench.memory", _DEMO, "--config.optim.warmup_epochs=1000"],
     "jpeft.bench.memory: error: Config field 'optim.warmup_epochs' = 1000 is not usable"),
    (["-m", "jpeft.bench.profile", _DEMO, "--config.optim.warmup_epochs=1000"],
     "jpeft.bench.profile: error: Config field 'optim.warmup_epochs' = 1000 is not usable"),
    (["-m", "jpeft.bench.mfu", "--methods=bogus", "--variants=mu/8", "--image_size=32", "--batch_sizes=2"],
     "jpeft.bench.mfu: error: Config field 'method' = 'bogus' (with config.peft): Unknown PEFT method 'bogus'"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list:
  """(completed process, its workdir) for each command line of MISSPELT + UNUSABLE: each runs as its own program
  (`python ...` from the repository), all in one child process that imports JAX and TensorFlow once."""
  tmp = tmp_path_factory.mktemp("cli_errors")
  workdirs = [tmp / f"w{i}" for i in range(len(MISSPELT + UNUSABLE))]
  procs = helpers.run_programs([[a.replace("WORKDIR", str(w)) for a in args]
                                for (args, _), w in zip(MISSPELT + UNUSABLE, workdirs)])
  return list(zip(procs, workdirs))


def _ids(cases):
  return [f"{args[1] if args[0] == '-m' else os.path.basename(args[0])} {args[-1]}" for args, _ in cases]


@pytest.mark.parametrize("index", range(len(MISSPELT)), ids=_ids(MISSPELT))
def test_misspelt_field_is_one_line_on_every_cli(index, runs):
  proc, workdir = runs[index]
  assert proc.returncode == 1 and proc.stderr.strip() == MISSPELT[index][1], proc.stderr[-2000:]
  assert not workdir.exists()


@pytest.mark.parametrize("index", range(len(UNUSABLE)), ids=_ids(UNUSABLE))
def test_bench_reports_a_config_error_in_one_line(index, runs):
  proc, _ = runs[len(MISSPELT) + index]
  line = UNUSABLE[index][1]
  assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
  assert proc.stderr.startswith(line), proc.stderr
