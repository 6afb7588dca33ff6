"""Early stop (`stop.test_acc`, `stop.patience`): end a run once it has generalized.

A sweep over many data sizes spends most of its time on runs that finished learning long
ago. With `stop.test_acc=0.99 stop.patience=K` a run ends at the evaluation where test_acc
has been >= 0.99 for K consecutive evaluations (that one included); it is `completed`, with
`stopped_early: true` in summary.json and its checkpoint at that step. The count comes from
the metrics rows, so a resumed run counts the rows it kept before the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from grok_cli.errors import check, is_int, is_number
from grok_cli.training.levers import Lever

if TYPE_CHECKING:
    from grok_cli.training.members import Members

log = logging.getLogger("grok")


class EarlyStop(Lever):
    """The `stop` node's lever (one run only: K members would each stop at another step)."""

    key = "stop.test_acc"

    def __init__(self, cfg: DictConfig, run_cfg: DictConfig | None = None) -> None:
        super().__init__(cfg, run_cfg or DictConfig({}))
        level, patience = cfg.test_acc, cfg.patience
        check(level is None or (is_number(level) and 0 < level <= 1), "stop.test_acc", level,
              "null (no early stop) or an accuracy in (0, 1]")
        check(is_int(patience) and patience > 0, "stop.patience", patience,
              "a positive integer (consecutive evaluations at stop.test_acc)")
        self.level, self.patience = level, patience
        self.streak = 0  # consecutive evaluations so far with test_acc >= level
        if level is not None:
            self.batched = "null with launcher=batched (members would stop at different steps)"

    def start(self, members: Members) -> None:
        from grok_cli.runfolder.metrics import read_metrics

        if members.all[0].runlog:  # the rows kept before a resumed run's checkpoint
            self.replay(read_metrics(members.all[0].runlog.metrics.path))

    def should_stop(self, members: Members, rows: list[dict[str, Any]]) -> bool:
        if not self.update(rows[0]):
            return False
        log.info("stopping early at step %d: test_acc >= %s for %d evaluations", rows[0]["step"],
                 self.level, self.patience)
        members.all[0].outcome.extra["stopped_early"] = True
        return True

    def update(self, row: dict[str, Any]) -> bool:
        """Count one evaluation row; True when the run should end here."""
        if self.level is None:
            return False
        self.streak = self.streak + 1 if row["test_acc"] >= self.level else 0
        return self.streak >= self.patience

    def replay(self, rows: Iterable[dict[str, Any]]) -> None:
        """Count the rows a resumed run kept from before its checkpoint."""
        for row in rows:
            self.update(row)
