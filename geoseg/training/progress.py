"""What training reports while it runs: one `EpochReport` per epoch, to a `TrainProgress`.

The CLI draws rich progress bars from these events, the Prefect flow logs them; the reports
are also the rows of a package's training history and of a checkpoint's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; also the rows of the package's training history."""

    epoch: int
    train_loss: float
    val_loss: float
    val_miou: float
    val_overall_accuracy: float
    lr: float
    seconds: float
    best: bool

    @property
    def validated(self) -> bool:
        """False for a refit's epochs, which hold nothing out (their val figures are NaN)."""
        return not math.isnan(self.val_loss)


class TrainProgress(Protocol):
    """Receives training events (the CLI draws rich progress bars from them)."""

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None: ...

    def step(self, epoch: int, step: int, loss: float) -> None: ...

    def epoch_done(self, report: EpochReport) -> None: ...


class NoTrainProgress:
    """Progress sink that ignores everything (library default)."""

    def started(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        pass

    def step(self, epoch: int, step: int, loss: float) -> None:
        pass

    def epoch_done(self, report: EpochReport) -> None:
        pass
