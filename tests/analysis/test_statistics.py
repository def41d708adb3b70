"""Every statistic on hand-made predictions whose answers are known, and against independent references
(scikit-learn for kappa and Jaccard, loops over samples for ECE, ensembles and Venn regions)."""
import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, jaccard_score

from jpeft.analysis import agreement, calibration, confident, ensembles, report
from jpeft.analysis.load import Split, TaskPredictions


def _predictions(seed: int, n: int = 300, num_classes: int = 5, right: float = 0.6):
  """labels [n] and a prediction [n] that is right with probability `right`, else a random class."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  pred = np.where(rng.random(n) < right, labels, rng.integers(0, num_classes, n))
  return labels, pred


def test_identical_methods_agree_exactly():
  labels, pred = _predictions(0)
  stats = agreement.pair_stats(pred, pred.copy(), labels)
  right = np.mean(pred == labels)
  assert stats["both"] == pytest.approx(right) and stats["neither"] == pytest.approx(1 - right)
  assert stats["only_a"] == stats["only_b"] == 0
  assert stats["kappa"] == pytest.approx(1.0)
  assert stats["error_jaccard"] == 1.0


def test_methods_that_never_agree():
  labels, pred_a = _predictions(1, num_classes=4)
  pred_b = (pred_a + 1) % 4  # a different class on every sample
  stats = agreement.pair_stats(pred_a, pred_b, labels)
  assert stats["both"] == 0  # never the same class, so never both right
  assert stats["only_a"] == pytest.approx(np.mean(pred_a == labels))
  assert stats["only_b"] == pytest.approx(np.mean(pred_b == labels))
  assert stats["kappa"] < 0  # agreement (none) below chance
  assert stats["kappa"] == pytest.approx(cohen_kappa_score(pred_a, pred_b))


def test_one_always_right_one_always_wrong():
  labels, _ = _predictions(2)
  stats = agreement.pair_stats(labels, (labels + 1) % 5, labels)
  assert (stats["both"], stats["only_a"], stats["only_b"], stats["neither"]) == (0, 1, 0, 0)
  assert stats["error_jaccard"] == 0  # a has no errors, b errs everywhere: nothing shared


@pytest.mark.parametrize("seed", range(4))
def test_kappa_and_error_jaccard_match_sklearn(seed):
  labels, pred_a = _predictions(seed, right=0.5)
  _, pred_b = _predictions(seed + 100, right=0.7)
  pred_b = np.where(np.random.default_rng(seed).random(len(labels)) < 0.5, pred_a, pred_b)  # correlated
  stats = agreement.pair_stats(pred_a, pred_b, labels)
  assert stats["kappa"] == pytest.approx(cohen_kappa_score(pred_a, pred_b))
  assert stats["error_jaccard"] == pytest.approx(jaccard_score(pred_a != labels, pred_b != labels))
  assert sum(stats[k] for k in ("both", "only_a", "only_b", "neither")) == pytest.approx(1.0)


def test_kappa_undefined_when_both_predict_one_class():
  assert math.isnan(agreement.cohen_kappa(np.zeros(10, int), np.zeros(10, int)))


def test_error_jaccard_of_two_perfect_methods_is_one():
  labels, _ = _predictions(3)
  assert agreement.pair_stats(labels, labels, labels)["error_jaccard"] == 1.0


def test_group_matrix_is_the_mean_over_the_groups_tasks():
  rows = [dict(task=t, a="x", b="y", **{s: v for s in agreement.STATS}) for t, v in (("t1", 0.2), ("t2", 0.6))]
  means = agreement.pair_means(dict(methods=["x", "y"], pairs=rows), ["t1", "t2"])
  m = agreement.matrix(means, ["x", "y"], "kappa")
  assert m[0, 1] == m[1, 0] == pytest.approx(np.mean([0.2, 0.6]))
  assert m[0, 0] == m[1, 1] == 1


def _calibrated(confidences, counts):
  """2-class logits whose class-0 probability is p, with round(p * n) of the n samples labelled 0."""
  logits, labels = [], []
  for p, n in zip(confidences, counts):
    logits += [[np.log(p), np.log(1 - p)]] * n
    right = round(p * n)
    labels += [0] * right + [1] * (n - right)
  return np.array(logits), np.array(labels)


def _ece_reference(confidence, correct, num_bins):
  """ECE by a loop over bins (lo, hi]: sum over bins of (n_bin / N) |accuracy - mean confidence|."""
  total = 0.0
  for b in range(num_bins):
    lo, hi = b / num_bins, (b + 1) / num_bins
    members = [i for i, c in enumerate(confidence) if (lo < c <= hi) or (b == 0 and c == 0)]
    if members:
      total += len(members) / len(confidence) * abs(np.mean(correct[members]) - np.mean(confidence[members]))
  return total


def test_perfectly_calibrated_method_has_zero_ece():
  logits, labels = _calibrated([0.6, 0.75, 0.9], [10, 20, 10])
  confidence, correct = calibration.confidence_and_correct(logits, labels)
  assert calibration.ece(confidence, correct) == pytest.approx(0.0, abs=1e-12)


def test_overconfident_method_ece_is_the_gap():
  confidence_level, accuracy = 0.9, 0.5
  logits, _ = _calibrated([confidence_level], [40])
  labels = np.array([0, 1] * 20)  # half right
  confidence, correct = calibration.confidence_and_correct(logits, labels)
  assert np.mean(correct) == accuracy
  assert calibration.ece(confidence, correct) == pytest.approx(confidence_level - accuracy)


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_loop_reference(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2, (500, 6))
  labels = rng.integers(0, 6, 500)
  confidence, correct = calibration.confidence_and_correct(logits, labels)
  assert calibration.ece(confidence, correct) == pytest.approx(_ece_reference(confidence, correct, 15))
  bins = calibration.reliability(confidence, correct)
  assert bins["count"].sum() == 500


def _softmax_reference(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_ensemble_rules_match_per_sample_reference():
  rng = np.random.default_rng(0)
  members = [rng.normal(0, s, (400, 5)) for s in (1.0, 3.0, 0.3)]
  probs = np.mean([_softmax_reference(m) for m in members], 0)
  expected_vote = []
  for i in range(400):
    votes = np.bincount([m[i].argmax() for m in members], minlength=5)
    tied = np.flatnonzero(votes == votes.max())
    expected_vote.append(tied[np.argmax(probs[i, tied])])
  np.testing.assert_array_equal(ensembles.combine(members, "softmax"), probs.argmax(-1))
  np.testing.assert_array_equal(ensembles.combine(members, "logits"), np.mean(members, 0).argmax(-1))
  np.testing.assert_array_equal(ensembles.combine(members, "vote"), expected_vote)
  # The three rules are different rules: on this data each pair of them disagrees somewhere.
  for a, b in itertools.combinations(ensembles.RULES, 2):
    assert np.any(ensembles.combine(members, a) != ensembles.combine(members, b)), (a, b)


def test_vote_tie_goes_to_the_more_probable_class():
  sure = np.array([[0.0, 4.0, 0.0]])  # class 1, confident
  unsure = np.array([[0.0, 0.0, 0.5]])  # class 2, barely
  assert ensembles.combine([sure, unsure], "vote")[0] == 1
  assert ensembles.combine([unsure, sure], "vote")[0] == 1  # not the first member's vote


def test_ensemble_of_complementary_methods_fixes_both():
  """a is right and sure on the first half, wrong and unsure on the second; b the reverse: averaging is right
  everywhere, each member on half."""
  labels = np.zeros(10, int)
  a = np.array([[4.0, 0.0]] * 5 + [[0.0, 0.5]] * 5)
  b = a[::-1]
  for member in (a, b):
    assert ensembles.accuracy(member.argmax(-1), labels) == 0.5
  for rule in ensembles.RULES:
    assert ensembles.accuracy(ensembles.combine([a, b], rule), labels) == 1.0


def test_seed_control_compares_seed_pairs_with_pairs_of_close_accuracy():
  """a and b: 50% each and complementary (their pair: 100%); c: 90%, 40 points from both; each method's two seeds
  are identical (a seed pair gains 0). Only (a, b) is close, so mixing methods beats mixing seeds, though the
  mean over all pairs, pulled down by c's lopsided pairs, is lower than for (a, b) alone."""
  labels = np.zeros(10, int)
  a = np.array([[4.0, 0.0]] * 5 + [[0.0, 0.5]] * 5)
  c = np.array([[3.0, 0.0]] * 9 + [[0.0, 3.0]])
  test = Split(labels=labels, logits={"a": {1: a, 2: a}, "b": {1: a[::-1], 2: a[::-1]}, "c": {1: c, 2: c}})
  result = ensembles.analyse([TaskPredictions("mini_count", test, None)], ["a", "b", "c"])
  assert [r["softmax"] - r["best_member"] for r in result["seeds"]] == [0.0, 0.0, 0.0]
  assert [(r["a"], r["b"]) for r in ensembles.close_pairs(result["pairs"])] == [("a", "b")]
  (line,) = [f for f in ensembles.findings(result) if f.startswith("Control")]
  assert "gain +0.0 points over the better seed (3 (task, method) seed pairs)" in line
  assert "within 2 points of each other gain +50.0 (1 pairs)" in line and "beats mixing seeds" in line


def test_close_pairs_threshold():
  rows = [dict(acc_a=0.50, acc_b=0.52), dict(acc_a=0.50, acc_b=0.53), dict(acc_a=0.61, acc_b=0.60)]
  assert ensembles.close_pairs(rows) == [rows[0], rows[2]]


def test_ensemble_of_identical_members_is_the_member():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(50, 4))
  for rule in ensembles.RULES:
    np.testing.assert_array_equal(ensembles.combine([logits, logits.copy()], rule), logits.argmax(-1))


def test_venn_regions_match_membership_count():
  rng = np.random.default_rng(0)
  universe = range(200)
  a, b, c = ({u for u in universe if rng.random() < p} for p in (0.3, 0.5, 0.6))
  counts = confident.venn_regions(a, b, c)
  for region in confident.REGIONS:
    inside = [s for name, s in zip("abc", (a, b, c)) if name in region]
    outside = [s for name, s in zip("abc", (a, b, c)) if name not in region]
    assert counts[region] == sum(all(u in s for s in inside) and not any(u in s for s in outside)
                                 for u in universe), region
  assert sum(counts.values()) == len(a | b | c)


def test_venn_of_three_equal_sets_is_all_shared():
  s = {1, 2, 3}
  assert confident.venn_regions(s, set(s), set(s)) == dict.fromkeys(confident.REGIONS, 0) | {"abc": 3}


def test_top_confident_takes_a_fraction_most_confident_first():
  logits = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
  confidence = _softmax_reference(logits).max(-1)
  picked = confident.top_confident(logits, 0.5)  # ceil(2.5) = 3 samples
  assert len(picked) == 3
  assert list(picked) == [1, 3, 2]  # 1 and 3 tie (same margin): lower index first
  assert confidence[picked].min() >= np.delete(confidence, picked).max()


def test_jaccard_of_sets():
  a, b = {1, 2, 3}, {2, 3, 4}
  assert report.jaccard(len(a & b), len(a | b)) == 2 / 4
  assert report.jaccard(0, 0) == 1.0  # two empty sets are equal
