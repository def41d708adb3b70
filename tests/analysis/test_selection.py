"""Ensemble selection reads val200 only: poisoned test labels and logits leave every choice unchanged, and a
method that is best on test but worst on val is not picked."""
import dataclasses

import numpy as np
import pytest

from jpeft.analysis import ensembles, load
from jpeft.analysis.load import Split, TaskPredictions

from .conftest import one_hot_logits

METHODS = ["a", "b", "c"]


def _split(rng, labels, right: dict) -> Split:
  """Each method right on the given share of samples (a random class elsewhere), two seeds."""
  logits = {}
  for method, share in right.items():
    logits[method] = {}
    for seed in (42, 43):
      pred = np.where(rng.random(len(labels)) < share, labels, rng.integers(0, 6, len(labels)))
      logits[method][seed] = one_hot_logits(pred, 6) + rng.normal(0, 0.5, (len(labels), 6))
  return Split(labels=labels, logits=logits)


@pytest.fixture
def task():
  rng = np.random.default_rng(0)
  val = _split(rng, rng.integers(0, 6, 200), {"a": 0.9, "b": 0.6, "c": 0.3})
  test = _split(rng, rng.integers(0, 6, 500), {"a": 0.3, "b": 0.6, "c": 0.9})  # the reverse order
  return TaskPredictions("dtd", test, val)


def _choices(result):
  return ([(r["val_best_method"], r["members"], r["rule"], r["val_accuracy"]) for r in result["chosen"]],
          [r["members"] for r in result["topk"]])


def test_ranking_and_choice_come_from_val(task):
  choice = ensembles.choose_on_val(task, METHODS)
  assert choice["ranking"] == ["a", "b", "c"]  # val order, though test says c > b > a
  chosen = [ensembles.combine([task.val.primary(m) for m in choice["ranking"][:choice["k"]]], choice["rule"])]
  assert ensembles.accuracy(chosen[0], task.val.labels) == choice["val_accuracy"]
  for k in range(2, 4):
    for rule in ensembles.RULES:
      members = [task.val.primary(m) for m in choice["ranking"][:k]]
      assert ensembles.accuracy(ensembles.combine(members, rule), task.val.labels) <= choice["val_accuracy"]


def test_rank_on_val_is_the_mean_over_seeds(task):
  scores = {m: np.mean([np.mean(x.argmax(-1) == task.val.labels) for x in task.val.logits[m].values()])
            for m in METHODS}
  assert ensembles.rank_on_val(task.val, ["c", "b", "a"]) == sorted(METHODS, key=lambda m: -scores[m])


def test_poisoned_test_data_leaves_selection_unchanged(task):
  rng = np.random.default_rng(1)
  poisoned = Split(labels=rng.integers(0, 6, len(task.test.labels)),
                   logits={m: {s: rng.normal(size=x.shape) for s, x in seeds.items()}
                           for m, seeds in task.test.logits.items()})
  clean = ensembles.analyse([task], METHODS)
  dirty = ensembles.analyse([dataclasses.replace(task, test=poisoned)], METHODS)
  assert _choices(clean) == _choices(dirty)
  assert clean["chosen"][0]["test_accuracy"] != dirty["chosen"][0]["test_accuracy"]  # the poison did reach test


def test_selection_never_touches_test_data(task):
  """Test labels and logits that raise when read: choosing on val still works, and scoring on test fails."""

  class Unreadable:
    """Stands in for test data; any read (as an array, compared, indexed, measured) raises."""
    __array_ufunc__ = None  # numpy hands comparisons to __eq__ below instead of converting

    def _read(self, *args, **kwargs):
      raise AssertionError("test data was read")

    __array__ = __eq__ = __ne__ = __len__ = __getitem__ = __iter__ = argmax = _read

  unreadable = Split(labels=Unreadable(), logits={m: {s: Unreadable() for s in seeds}
                                                  for m, seeds in task.test.logits.items()})
  guarded = dataclasses.replace(task, test=unreadable)
  assert ensembles.choose_on_val(guarded, METHODS) == ensembles.choose_on_val(task, METHODS)
  with pytest.raises(AssertionError, match="test data was read"):
    ensembles.analyse([guarded], METHODS)  # scoring on test must read it: the guard does guard


def test_without_val_no_choice_is_made(task):
  result = ensembles.analyse([dataclasses.replace(task, val=None)], METHODS)
  assert result["chosen"] == [] and result["topk"] == [] and result["without_val"] == ["dtd"]
  assert len(result["pairs"]) == 3  # pairs need no selection
  assert any("No val200 predictions for dtd" in line for line in ensembles.findings(result))


def test_seed_pairs_are_the_control(task):
  result = ensembles.analyse([task], METHODS)
  assert [r["method"] for r in result["seeds"]] == METHODS
  row = result["seeds"][0]
  members = list(task.test.logits["a"].values())
  assert row["softmax"] == ensembles.accuracy(ensembles.combine(members, "softmax"), task.test.labels)
  assert row["best_member"] == max(ensembles.accuracy(x.argmax(-1), task.test.labels) for x in members)


def test_load_is_what_selection_sees(tmp_path, task):
  """Through files: the loaded val200 split is the one written, so the choice equals the in-memory one."""
  from .conftest import write_sweep
  write_sweep(str(tmp_path), {"dtd": dict(labels=task.test.labels, test=task.test.logits,
                                          val_labels=task.val.labels, val=task.val.logits)})
  (loaded,) = load.load_sweep(str(tmp_path))
  assert ensembles.choose_on_val(loaded, METHODS) == ensembles.choose_on_val(task, METHODS)
