"""`timecredits up` runs verify on a timer (docs/design.md §3.3): on a thread of its own, so that the
supervision loop and the other jobs carry on during a long run, and never two runs at once: the next run is due
an interval after the previous one has ended."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class VerifyTimer:
    def __init__(self, run: Callable[[], None], interval_s: float, *, first_in_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run, self._interval_s, self._clock = run, interval_s, clock
        self._due = clock() + (interval_s if first_in_s is None else first_in_s)
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> bool:
        """Start a run when one is due and none is running; whether one started."""
        if self.running or self._clock() < self._due:
            return False
        self._thread = threading.Thread(target=self._one_run, name="verify", daemon=True)
        self._thread.start()
        return True

    def _one_run(self) -> None:
        try:
            self._run()
        finally:
            self._due = self._clock() + self._interval_s

    def join(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for a run in progress to end."""
        if self._thread is not None:
            self._thread.join(timeout_s)
