"""Small text helpers for messages: durations people read at a glance, and engine or build output made
safe to show (terminal escape sequences removed)."""

from __future__ import annotations

import re

__all__ = ["duration", "strip_ansi"]

# CSI sequences (colours, cursor moves), OSC sequences (titles, links) and other two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def duration(seconds: float) -> str:
    """``0.25`` → "250ms", ``2.30595`` → "2.3s", ``30`` → "30s", ``150`` → "2m30s", ``3720`` → "1h2m"."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms" if seconds * 1000 < 999.5 else "1s"
    if seconds < 10:
        text = f"{seconds:.1f}"
        return (text[:-2] if text.endswith(".0") else text) + "s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, rest = divmod(whole, 3600)
    minutes = round(rest / 60)
    if minutes == 60:
        hours, minutes = hours + 1, 0
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (tabs and line breaks stay);
    a carriage return that redraws a progress line keeps what was drawn last."""
    text = _ANSI.sub("", text)
    if "\r" in text:
        text = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))
    return _CONTROL.sub("", text)
