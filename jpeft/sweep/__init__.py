"""Sweep engine: the study's tuning protocol with many trials trained at once by `jax.vmap`.

  trials = grid.expand('dtd', 'lora', grid.default_grid())        # lr x wd x rank x seeds
  rows = runner.run_trials(config, trials, 'tune', trial_batch=8)  # one vmapped program per shape group
  summaries = protocol.run_sweep(config, ['dtd'], ['lora'], grid.default_grid(), 'runs/sweep', 8)
  tables.write_all(summaries, 'runs/sweep')                      # results.md / .csv, accuracy_vs_params.png

Finished trials are recorded in `<workdir>/trials.jsonl` under the base config recorded beside them
(`trial_log`), so a rerun resumes and a rerun under another config is refused. Any number of processes may
sweep one workdir, each (task, method) pair trained by the one holding its lock (`pairs`: shards, locks, the
recorded plan); `report` writes the tables of what finished and names the state of every other pair.

CLI: `python -m jpeft.sweep --config=... --tasks=... --methods=... --workdir=... [--shard=K/N]` and
`python -m jpeft.sweep --workdir=... --report` (see `__main__`).
"""
from jpeft.sweep import grid, padding, pairs, protocol, report, runner, tables, trial_log
from jpeft.sweep.grid import GridError, Trial, default_grid, expand, shape_groups
from jpeft.sweep.protocol import run_sweep, select
from jpeft.sweep.runner import run_trials
