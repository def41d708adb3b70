"""Ensembles: does combining methods that make different mistakes beat the best of them?

Three rules combine members' [N, C] logits: the mean of their softmax outputs ('softmax'), the mean of their
logits ('logits'), and a majority vote ('vote', ties to the tied class with the highest mean softmax). Reported
on test, per task and as group means:
  pairs     every pair of methods (primary seeds) against the better of the two on test, an oracle choice
            and so the hardest baseline to beat;
  top-k     the k best methods by val200 accuracy, k = 2..M, against the best member on test and against the
            val-best single method;
  chosen    per task, the k and rule with the best val200 accuracy, against the val-best single method: the
            comparison a user without test labels can make. Everything chosen is chosen on val200 alone;
  seeds     the control, where the sweep has several seeds: two seeds of one method against the better seed,
            to see whether mixing methods beats mixing seeds. Seeds of one method are about equally accurate,
            while a pair of methods may not be, and a weak member pulls an ensemble down: so the seed pairs are
            compared with the pairs of methods within `CLOSE_GAP` of each other on test (and with all pairs).
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np

from jpeft.analysis import report
from jpeft.analysis.load import Split, TaskPredictions

RULES = ("softmax", "logits", "vote")
# Pairs of methods this close in test accuracy are compared with seed pairs (the control): about the spread
# between two seeds of one method (mini study: 0.8 points on average, under 2 in 9 of 10 seed pairs).
CLOSE_GAP = 0.02


def combine(members: Sequence[np.ndarray], rule: str, probs: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
  """Predicted classes [N] of the ensemble of `members` ([N, C] logits each) under `rule` (see `RULES`).

  probs: the members' softmax outputs where the caller has them (`report.softmax` of each member, the same
  numbers as computed here; an analysis combines each member many times, and computes them once)."""
  if rule not in RULES:
    raise ValueError(f"Unknown ensemble rule {rule!r}; expected one of {RULES}.")
  stack = np.stack(members)
  if rule == "logits":
    return stack.mean(0).argmax(-1)
  mean_probs = (report.softmax(stack) if probs is None else np.stack(probs)).mean(0)
  if rule == "softmax":
    return mean_probs.argmax(-1)
  votes = np.zeros(mean_probs.shape)
  for member in stack:
    votes[np.arange(len(votes)), member.argmax(-1)] += 1
  # A pair that disagrees ties: the tied class the members give the highest mean probability wins.
  return np.where(votes == votes.max(-1, keepdims=True), mean_probs, -np.inf).argmax(-1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(pred == labels))


def rank_on_val(val: Split, methods: Sequence[str]) -> list[str]:
  """Methods by val200 accuracy, best first (mean over seeds: the sweep's own selection criterion); ties keep
  the order of `methods`."""
  score = {m: np.mean([accuracy(x.argmax(-1), val.labels) for x in val.logits[m].values()]) for m in methods}
  return sorted(methods, key=lambda m: -score[m])


def choose_on_val(tp: TaskPredictions, methods: Sequence[str]) -> dict:
  """The top-k ensemble (k >= 2, members by `rank_on_val`) and rule with the best val200 accuracy of `tp`.

  Reads `tp.val` only, never `tp.test` (tests/analysis/test_selection.py holds it to that). Ties go to the
  smaller k, then to the rule listed first. Returns {'ranking', 'k', 'rule', 'val_accuracy'}.
  """
  val = tp.val
  ranking = rank_on_val(val, methods)
  probs = {m: report.softmax(val.primary(m)) for m in ranking}
  best = None
  for k in range(2, len(ranking) + 1):
    for rule in RULES:
      score = accuracy(combine([val.primary(m) for m in ranking[:k]], rule, [probs[m] for m in ranking[:k]]),
                       val.labels)
      if best is None or score > best["val_accuracy"]:
        best = dict(ranking=ranking, k=k, rule=rule, val_accuracy=score)
  return best


def _rule_accuracies(members: Sequence[np.ndarray], labels: np.ndarray,
                     probs: Sequence[np.ndarray]) -> dict[str, float]:
  return {rule: accuracy(combine(members, rule, probs), labels) for rule in RULES}


def analyse(tasks: Sequence[TaskPredictions], methods: Sequence[str]) -> dict:
  """{'pairs', 'topk', 'chosen', 'seeds': rows, 'without_val': tasks that saved no val200 predictions}."""
  pairs, topk, chosen, seeds, without_val = [], [], [], [], []
  for tp in tasks:
    group = report.group_of(tp.task)
    test, labels = tp.test, tp.test.labels
    single = {m: accuracy(test.primary(m).argmax(-1), labels) for m in methods}
    probs = {m: report.softmax(test.primary(m)) for m in methods}
    for a, b in itertools.combinations(methods, 2):
      pairs.append(dict(task=tp.task, group=group, a=a, b=b, acc_a=single[a], acc_b=single[b],
                        best_member=max(single[a], single[b]),
                        **_rule_accuracies([test.primary(a), test.primary(b)], labels, [probs[a], probs[b]])))
    for m in methods:
      if len(test.logits[m]) > 1:
        first, second = list(test.logits[m].items())[:2]
        seeds.append(dict(task=tp.task, group=group, method=m, seeds=f"{first[0]}+{second[0]}",
                          best_member=max(accuracy(x.argmax(-1), labels) for _, x in (first, second)),
                          **_rule_accuracies([first[1], second[1]], labels,
                                             [report.softmax(first[1]), report.softmax(second[1])])))
    if tp.val is None:
      without_val.append(tp.task)
      continue
    choice = choose_on_val(tp, methods)
    ranking = choice["ranking"]
    for k in range(2, len(ranking) + 1):
      members = ranking[:k]
      topk.append(dict(task=tp.task, group=group, k=k, members="+".join(members),
                       best_member=max(single[m] for m in members), val_best_single=single[ranking[0]],
                       **_rule_accuracies([test.primary(m) for m in members], labels, [probs[m] for m in members])))
    members = ranking[:choice["k"]]
    chosen.append(dict(task=tp.task, group=group, val_best_method=ranking[0], val_best_single=single[ranking[0]],
                       members="+".join(members), rule=choice["rule"], val_accuracy=choice["val_accuracy"],
                       test_accuracy=accuracy(combine([test.primary(m) for m in members], choice["rule"],
                                                      [probs[m] for m in members]), labels)))
  return dict(pairs=pairs, topk=topk, chosen=chosen, seeds=seeds, without_val=without_val)


def _group_means(result: dict) -> list[list]:
  """One row per group: mean gains of pairs, seed pairs and the val-chosen ensemble (mean-softmax rule)."""
  rows = []
  for group in report.by_group(dict.fromkeys(r["task"] for r in result["pairs"] + result["seeds"])):
    pairs = [r for r in result["pairs"] if r["group"] == group]
    seeds = [r for r in result["seeds"] if r["group"] == group]
    chosen = [r for r in result["chosen"] if r["group"] == group]
    rows.append([group, *(report.mean(r[rule] - r["best_member"] for r in pairs) for rule in RULES),
                 report.mean(r["softmax"] - r["best_member"] for r in seeds),
                 report.mean(r["val_best_single"] for r in chosen), report.mean(r["test_accuracy"] for r in chosen)])
  return rows


def write(result: dict, out: str) -> list[str]:
  """ensembles_{pairs,topk,chosen,seeds,groups}.md / .csv; returns the paths."""
  paths = report.write_table(out, "ensembles_pairs", ["task", "group", "method a", "method b", "a", "b",
                                                      "best member", *RULES],
                             [list(r.values()) for r in result["pairs"]])
  paths += report.write_table(out, "ensembles_topk", ["task", "group", "k", "members (val order)", "best member",
                                                      "val-best single", *RULES],
                              [list(r.values()) for r in result["topk"]])
  paths += report.write_table(out, "ensembles_chosen", ["task", "group", "val-best method", "its test accuracy",
                                                        "chosen members", "rule", "val accuracy",
                                                        "test accuracy"],
                              [list(r.values()) for r in result["chosen"]])
  paths += report.write_table(out, "ensembles_seeds", ["task", "group", "method", "seeds", "best member", *RULES],
                              [list(r.values()) for r in result["seeds"]])
  paths += report.write_table(out, "ensembles_groups", ["group", *(f"pair gain ({r})" for r in RULES),
                                                        "seed-pair gain (softmax)", "val-best single",
                                                        "val-chosen ensemble"], _group_means(result))
  return paths


def findings(result: dict) -> list[str]:
  """Markdown bullets: pair gains per rule, the val-chosen ensemble against the val-best method, seed pairs."""
  lines = []
  pairs = result["pairs"]
  if pairs:
    gains = {rule: [r[rule] - r["best_member"] for r in pairs] for rule in RULES}
    lines.append(f"Pairs of methods against the better member on test, over {len(pairs)} (task, pair) "
                 "combinations: " + "; ".join(
                     f"{rule} {_points(report.mean(g))} points (better in {report.pct(np.mean(np.array(g) > 0))}%, "
                     f"worse in {report.pct(np.mean(np.array(g) < 0))}%)" for rule, g in gains.items()) + ".")
  if result["chosen"]:
    chosen = result["chosen"]
    single = report.mean(r["val_best_single"] for r in chosen)
    ensemble = report.mean(r["test_accuracy"] for r in chosen)
    lines.append(f"Chosen on val200 only, over {len(chosen)} task(s): the top-k ensemble (k and rule per task) "
                 f"reaches {report.pct(ensemble)}% test accuracy against {report.pct(single)}% for the val-best "
                 f"single method ({_points(ensemble - single)} points); choices: " +
                 ", ".join(f"{r['task']} {r['members']} ({r['rule']})" for r in chosen) + ".")
  for group, *gains, seed_gain, single, ensemble in _group_means(result):
    lines.append(f"{group}: pairs {_points(gains[0])} points over the better member (mean softmax)" +
                 ("" if np.isnan(seed_gain) else f", seed pairs {_points(seed_gain)}") +
                 ("" if np.isnan(single) else f"; val-chosen ensemble {report.pct(ensemble)}% against the val-best "
                                              f"single method's {report.pct(single)}%") + ".")
  if result["without_val"]:
    lines.append(f"No val200 predictions for {', '.join(result['without_val'])}: the sweep was made before jpeft "
                 "saved them, so no top-k ensemble was chosen there. Rerun the sweep into a new --workdir for it.")
  if result["seeds"]:
    lines.append(_control(result["seeds"], pairs))
  else:
    lines.append("No seed control: the sweep has one seed per method (rerun it with --grid.final_seeds=42,43 for one).")
  return lines


def close_pairs(pairs: Sequence[dict], max_gap: float = CLOSE_GAP) -> list[dict]:
  """The pair rows whose two methods' test accuracies differ by at most `max_gap` (a fraction)."""
  return [r for r in pairs if abs(r["acc_a"] - r["acc_b"]) <= max_gap + 1e-9]


def _control(seeds: Sequence[dict], pairs: Sequence[dict]) -> str:
  """The seed control's sentence: seed pairs against pairs of methods of close accuracy on the same tasks (a
  pair's gain over its better member shrinks as the members' accuracies part, and two seeds are close)."""
  seed_gain = report.mean(r["softmax"] - r["best_member"] for r in seeds)
  tasks = {r["task"] for r in seeds}
  same_tasks = [r for r in pairs if r["task"] in tasks]
  close = close_pairs(same_tasks)
  close_gain = report.mean(r["softmax"] - r["best_member"] for r in close)
  line = (f"Control: two seeds of one method (mean softmax) gain {_points(seed_gain)} points over the better seed "
          f"({len(seeds)} (task, method) seed pairs). On the same tasks, two methods whose test accuracies are "
          f"within {100 * CLOSE_GAP:.0f} points of each other gain {_points(close_gain)} ({len(close)} pairs), "
          f"and all pairs {_points(report.mean(r['softmax'] - r['best_member'] for r in same_tasks))}")
  if not close:
    return line + ": no pair of methods is that close, so the control cannot be read here."
  verdict = "beats" if close_gain > seed_gain else "does not beat"
  return line + f": mixing methods of equal accuracy {verdict} mixing seeds here."


def _points(delta: float) -> str:
  """A difference of fractions in percentage points, signed."""
  return f"{100 * delta:+.1f}"
