"""grid.pad_shapes: trials that differ only in a paddable shape field share one program at the largest value,
and a padded trial trains as it does alone at its real shape (same logits, accuracy and real-part parameters).
The per-method algebra is tested in tests/peft/test_padding.py."""
import types

import jax
import numpy as np
import pytest

from .conftest import load_config, tiny_overrides
from jpeft.sweep import grid, halving, padding, runner


def test_padded_trial_trains_as_alone(folder_root, monkeypatch):
  # One epoch at the images' own 16x16 (4 patches): the test's cost is its two programs' compilations.
  config = load_config({**tiny_overrides(folder_root), "optim.epochs": 1, "data.image_size": 16})
  with config.unlocked():  # alpha / r reads the real rank (a traced multiplier); dropout acts on z, unpadded
    config.peft.lora = {"scaling": "alpha_over_r", "alpha": 4.0, "dropout": 0.1}
  params = {}
  evaluate = runner.GroupRunner.evaluate

  def capture(self, eval_data, trainable, hparams, size):  # the trained parameters, at each evaluation
    params.update({k: np.asarray(v)[:size] for k, v in trainable.items()})
    return evaluate(self, eval_data, trainable, hparams, size)

  monkeypatch.setattr(runner.GroupRunner, "evaluate", capture)

  def train(trials, pad, runners, mode="tune"):
    logits = []
    rows = runner.run_trials(config, trials, mode, trial_batch=2, pad=pad, runners=runners,
                             on_chunk=lambda rows, predictions: logits.append(predictions["logits"]))
    return rows, np.concatenate(logits), dict(params)

  small, large = (grid.Trial("dtd", "lora", 3e-2, 1e-4, (("lora.rank", r),), 42) for r in (2, 4))
  runners = {}
  rows, logits, padded = train([small, large], True, runners)
  assert len(runners) == 1  # one program for both ranks
  alone_rows, alone_logits, alone = train([small], False, {})
  assert rows[0]["key"] == small.key and rows[0]["hparams"] == {"lora.rank": 2}  # the record keeps the real rank
  assert rows[0]["padded_to"] == {"lora.rank": 4} and "padded_to" not in rows[1]
  assert rows[0]["trainable_params"] == alone_rows[0]["trainable_params"] < rows[1]["trainable_params"]
  np.testing.assert_allclose(logits[0], alone_logits[0], rtol=1e-4, atol=1e-5)
  assert rows[0]["accuracy"] == alone_rows[0]["accuracy"]
  np.testing.assert_allclose(rows[0]["loss"], alone_rows[0]["loss"], rtol=1e-5)
  for path, real in alone.items():
    window = tuple(slice(0, n) for n in real[0].shape)
    # Adam divides by the gradient's RMS, so float reassociation in near-zero gradients shows at about lr * 1e-3.
    np.testing.assert_allclose(padded[path][0][window], real[0], rtol=1e-4, atol=1e-4, err_msg=path)
    rest = padded[path][0].copy()
    rest[window] = 0
    assert not rest.any(), f"{path}: the padding did not stay zero"


def test_pad_groups_only_what_differs_in_paddable_fields(folder_root):
  config = load_config(tiny_overrides(folder_root))
  with config.unlocked():
    config.peft.adapter = {"dropout": 0.1}
  lora = grid.expand("dtd", "lora", {"lr": (1e-3, 1e-2), "wd": (1e-4,), "seeds": (42,), "lora": {"rank": (1, 8)}})
  adapter = grid.expand("dtd", "adapter", {"lr": (1e-3,), "wd": (1e-4,), "seeds": (42,),
                                           "adapter": {"bottleneck": (4, 8), "scale": (0.1, 1)}})
  (shape, members), = padding.program_groups(config, lora, pad=True)
  assert shape.hparams == (("lora.rank", 8),) and members == lora
  assert len(padding.program_groups(config, lora, pad=False)) == 2
  # Adapter dropout 0.1 draws its mask at the bottleneck's shape: not padded, one program per bottleneck.
  assert len(padding.program_groups(config, adapter, pad=True)) == 2
  with config.unlocked():
    config.peft.adapter.dropout = 0.0
  (shape, members), = padding.program_groups(config, adapter, pad=True)
  assert dict(shape.hparams)["adapter.bottleneck"] == 8 and len(members) == 4


class _Program:
  """A stand-in for runner.GroupRunner (installed by `_use`) in the tests of which program trains what: it trains
  nothing, keeps what it was asked to (`trained`, `started`, filled by a test's subclass) and appends itself to
  its class's `built`; `covers` is the real runner's."""

  def __init__(self, config, group, data, mesh, shape, padded):
    self.shape, self.padded, self.trained, self.started = shape, padded, [], []
    type(self).built.append(self)

  covers = runner.GroupRunner.covers


def _use(monkeypatch, program: type) -> list:
  """Installs `program` (a _Program subclass) as runner.GroupRunner; returns the list of the programs it builds."""
  monkeypatch.setattr(program, "built", [], raising=False)
  monkeypatch.setattr(runner, "GroupRunner", program)
  return program.built


def test_a_cached_program_that_covers_a_group_trains_it(folder_root, monkeypatch):
  """The final retrain of a selected rank runs in the tune stage's padded program: no new program."""
  config = load_config(tiny_overrides(folder_root))

  class Program(_Program):
    def train(self, trials, mode, on_epoch=None, stop=None):
      self.trained.append((mode, [t.key for t in trials]))
      return [dict(t.row(), stage=mode) for t in trials], {"logits": np.zeros((len(trials), 1, 1))}

  built = _use(monkeypatch, Program)
  trials = [grid.Trial("dtd", "lora", 1e-3, 1e-4, (("lora.rank", r),), 42) for r in (2, 8)]
  runners = {}
  runner.run_trials(config, trials, "tune", trial_batch=8, pad=True, runners=runners)
  runner.run_trials(config, trials[:1], "final", trial_batch=8, pad=True, runners=runners)
  (program,) = built
  assert dict(program.shape.hparams) == {"lora.rank": 8} and program.padded == ("lora.rank",)
  assert program.trained == [("tune", [t.key for t in trials]), ("final", [trials[0].key])]
  runner.run_trials(config, trials[:1], "final", trial_batch=8, pad=False, runners=runners)
  assert len(built) == 2  # unpadded: the rank-2 program of its own


def test_halving_survivors_continue_in_the_padded_program(folder_root, monkeypatch):
  """Successive halving with padding: the rung's survivor (rank 2) goes on in the pair's padded program (rank 8),
  from its state, not in a program of its own shape; unpadded, each rank has its own."""
  config = load_config(tiny_overrides(folder_root))

  class Program(_Program):
    def start(self, trials, mode, states=None):
      self.started.append(([dict(t.hparams)["lora.rank"] for t in trials], states is not None))
      return types.SimpleNamespace(trials=trials, epoch=states[0].epoch if states else 0)

    def advance(self, chunk, to_epoch, on_epoch=None, stop=None, rung=False):
      chunk.epoch = to_epoch

    def rows(self, chunk):  # the smallest rank scores best at the rung
      rows = [dict(t.row(), diverged=False, rung_evals=[dict(epoch=chunk.epoch, nonfinite_steps=0,
                                                              accuracy=1 / dict(t.hparams)["lora.rank"])])
              for t in chunk.trials]
      return rows, dict(logits=np.zeros((len(rows), 1, 1)), labels=np.zeros(1))

    def detach(self, chunk):
      return [types.SimpleNamespace(epoch=chunk.epoch) for _ in chunk.trials]

  built = _use(monkeypatch, Program)
  trials = [grid.Trial("dtd", "lora", 1e-3, 1e-4, (("lora.rank", r),), 42) for r in (4, 2, 8)]
  schedule = halving.Schedule(eta=2, rungs=(1,), epochs=2)
  recorded = []
  tune = lambda pad: halving.tune(config, trials, schedule, lambda t: None, 8, lambda rows, _: recorded.extend(rows),
                                  {}, {}, log=lambda _: None, pad=pad)
  tune(True)
  (program,) = built
  assert dict(program.shape.hparams) == {"lora.rank": 8}
  assert program.started == [([4, 2, 8], False), ([2], True)]
  assert {r["hparams"]["lora.rank"]: r["halted"] for r in recorded} == {4: True, 2: False, 8: True}
  built.clear()
  tune(False)
  assert [p.started for p in built] == [[([4], False)], [([2], False), ([2], True)], [([8], False)]]


def test_a_continued_state_is_cut_or_zero_padded_to_its_program():
  state = {"a": np.arange(6.0).reshape(2, 3), "count": np.int32(5)}
  like = {"a": jax.ShapeDtypeStruct((3, 2), np.float32), "count": jax.ShapeDtypeStruct((), np.int32)}
  resized = padding.resize(state, like)
  np.testing.assert_array_equal(resized["a"], [[0, 1], [3, 4], [0, 0]])
  assert resized["count"] == 5 and resized["count"].dtype == np.int32


def test_pad_shapes_entry_is_a_bool_and_grids_recorded_without_it_read_the_default():
  assert grid.pad_shapes({}) is grid.PAD_SHAPES and grid.pad_shapes(grid.default_grid()) is grid.PAD_SHAPES
  assert grid.pad_shapes({"pad_shapes": False}) is False and grid.pad_shapes({"pad_shapes": True}) is True
  with pytest.raises(grid.GridError, match="'pad_shapes' has the value 'yes'"):
    grid.pad_shapes({"pad_shapes": "yes"})
