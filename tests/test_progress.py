"""Progress output (eventpipe/progress.py): rewritten in place on a terminal, whole lines in a file."""

from __future__ import annotations

import io

from eventpipe.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_file_gets_one_whole_line_per_update():
    out = io.StringIO()
    progress = Progress(out)
    for n in (100, 200, 300):
        progress.update(f"  demo: {n}/300 requests")
    progress.done()
    assert out.getvalue() == "  demo: 100/300 requests\n  demo: 200/300 requests\n  demo: 300/300 requests\n"
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_one_line_rewritten_in_place_and_ended_once():
    out = _Terminal()
    progress = Progress(out)
    progress.update("  replayed 1000")
    progress.update("  done")  # shorter: the rest of the longer line is blanked
    progress.done()
    progress.done()
    assert out.getvalue() == "\r  replayed 1000\r" + "  done".ljust(len("  replayed 1000")) + "\n"


def test_no_stream_and_no_updates_write_nothing():
    Progress(None).update("x")
    out = _Terminal()
    Progress(out).done()
    assert out.getvalue() == ""
