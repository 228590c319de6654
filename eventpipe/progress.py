"""Progress lines that rewrite themselves on a terminal and stay whole lines in a log file.

A ``\\r`` progress line suits a person watching a terminal and nobody else: in a
file or a CI log every update lands on the same line, so the file becomes one
very long line. ``Progress`` rewrites its line only when its stream is a
terminal, and writes each update as a line of its own otherwise. The demo, the
dead-letter replay and whatever else reports progress use it.
"""

from __future__ import annotations


def is_terminal(out) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """``update(text)`` as often as wanted, ``done()`` once at the end (``out=None``: silent)."""

    def __init__(self, out):
        self.out = out
        self.terminal = out is not None and is_terminal(out)
        self.width = 0  # of the line being rewritten, to blank what a shorter update leaves

    def update(self, text: str) -> None:
        if self.out is None:
            return
        if self.terminal:
            print("\r" + text.ljust(self.width), end="", file=self.out, flush=True)
            self.width = max(self.width, len(text))
        else:
            print(text, file=self.out, flush=True)

    def done(self) -> None:
        """End the rewritten line with a newline (on a terminal; elsewhere each update already ended its own)."""
        if self.terminal and self.width:
            print(file=self.out, flush=True)
            self.width = 0
