"""How library code reports progress without knowing who listens (rich, Prefect logs, tests)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress events from a run; every method must be cheap and must not raise."""

    def scene_started(self, scene: str, total_tiles: int, window_px: int) -> None: ...

    def tiles_done(self, scene: str, n: int) -> None: ...

    def stage(self, scene: str, stage: str) -> None: ...

    def scene_finished(self, scene: str) -> None: ...


class NoProgress:
    """Progress sink that ignores everything (library default)."""

    def scene_started(self, scene: str, total_tiles: int, window_px: int) -> None:
        pass

    def tiles_done(self, scene: str, n: int) -> None:
        pass

    def stage(self, scene: str, stage: str) -> None:
        pass

    def scene_finished(self, scene: str) -> None:
        pass
