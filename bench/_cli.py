"""What the benchmarks' command lines share: argument types and how a signal stops a run."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import Any


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, which must be > 0."""
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """The first Ctrl-C or SIGTERM unwinds like KeyboardInterrupt, so the finally blocks
    stop what was started; further ones are ignored so that they cannot cut that short
    (every step of the cleanup is time-bounded)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
