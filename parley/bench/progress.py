"""The live line on stderr while a bench runs: rich when there is a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

REFRESH_S = 0.25
PLAIN_EVERY_S = 5.0


class Progress:
    """Shows one status line, refreshed from a callback, until the step ends."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._terminal = sys.stderr.isatty()
        self._live = None
        if enabled and self._terminal:
            with contextlib.suppress(ImportError):
                from rich.console import Console
                from rich.live import Live

                self._live = Live(
                    "",
                    console=Console(stderr=True),
                    refresh_per_second=8,
                    transient=True,
                )

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()
        elif self.enabled and self._terminal:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def note(self, text: str) -> None:
        """A line that stays: a step finished, a warning."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        elif self.enabled:
            if self._terminal:
                sys.stderr.write("\r\033[K")
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _show(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text))
        elif self._terminal:
            sys.stderr.write("\r\033[K" + text[:200])
            sys.stderr.flush()
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    @contextlib.asynccontextmanager
    async def status(self, label: str, describe: Callable[[], str]):
        """Refresh ``label: describe()`` while the block runs."""
        if not self.enabled:
            yield
            return
        start = time.monotonic()
        interval_s = REFRESH_S if self._terminal else PLAIN_EVERY_S

        async def refresh() -> None:
            while True:
                elapsed_s = time.monotonic() - start
                self._show(f"{label} [{elapsed_s:5.1f} s] {describe()}")
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
