"""Liu et al. (2022)'s four learning phases, as pure functions of two steps per run.

"Towards Understanding Grokking: An Effective Theory of Representation Learning" (arXiv
2205.10343) colours every run of a two-hyperparameter sweep by two steps: the first at which
training accuracy reaches 90% and the first at which validation (test) accuracy does, each
within a step budget. Their phase-diagram code (ejmichaud/grokking-squared,
phase_diagram_plot/simple_phase_diagram.ipynb and toy/Figure5.ipynb) reads:

  comprehension  both reached within the budget, test - train <= the grokking delay
  grokking       both reached within the budget, test - train >  the grokking delay
  memorization   train reached, test not
  confusion      neither reached

with accuracy 0.9 for both, budget 1e5 steps and delay 1e3 for the transformer diagrams
(toy model: budget 1e4, delay 1e3 or 2e3). A run that generalizes without fitting its training
set falls in none of their three indicator products, so their plot colours it as comprehension;
so does this one. Their loop stores a never-reached step as `budget - 1`, so a threshold first
reached on the very last step counts as missed there; here "within the budget" is step <=
budget. Steps are known to a run's evaluation spacing (eval_every), theirs to every step.

`undecided` is ours: a run whose last evaluated step is before the budget and whose phase could
still change (test accuracy not yet reached) is never guessed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

COMPREHENSION, GROKKING, MEMORIZATION, CONFUSION = (
    "comprehension", "grokking", "memorization", "confusion")
UNDECIDED = "undecided"
PHASES = (COMPREHENSION, GROKKING, MEMORIZATION, CONFUSION, UNDECIDED)
NO_MAJORITY = "tie"  # a cell whose seeds split evenly between two or more phases


@dataclass(frozen=True)
class Rule:
    """The thresholds of the classification (conf/phase.yaml)."""

    train_acc: float  # training accuracy that counts as fitted (Liu et al.: 0.9)
    test_acc: float  # test accuracy that counts as generalized (Liu et al.: 0.9)
    budget: int  # steps within which a threshold must be reached (1e5)
    grok_delay: int  # test step - train step above which a run groks (1e3)

    def describe(self) -> str:
        return (f"Liu et al. 2022: train acc >= {self.train_acc:g} and test acc >= "
                f"{self.test_acc:g} within {self.budget:,} steps; grokking when test reaches "
                f"it > {self.grok_delay:,} steps after train")


def classify(train_step: int | None, test_step: int | None, last_step: int | None,
             rule: Rule) -> str:
    """The phase of one run from its first steps reaching rule.train_acc / rule.test_acc (None:
    never) and its last evaluated step (None: no evaluation at all)."""
    fitted = train_step is not None and train_step <= rule.budget
    generalized = test_step is not None and test_step <= rule.budget
    if generalized:
        grokked = fitted and test_step - train_step > rule.grok_delay  # type: ignore[operator]
        return GROKKING if grokked else COMPREHENSION
    if last_step is None or last_step < rule.budget:
        return UNDECIDED  # test accuracy may still be reached within the budget
    return MEMORIZATION if fitted else CONFUSION


def majority(phases: list[str]) -> tuple[str, int]:
    """(the phase most seeds of a cell have, how many have it); NO_MAJORITY on a tie."""
    ranked = Counter(phases).most_common()
    top, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        return NO_MAJORITY, count
    return top, count
