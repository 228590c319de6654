"""User-agent strings as typed columns: browser, OS, device family and a bot flag.

Analysts ask "which browsers, which OS versions, how much of this is crawlers"
and cannot answer it from a raw user-agent string in SQL. The parsing is
ua-parser's (the maintained uap-core rules) with its native accelerator
ua-parser-rs, cached by string: a device sends the same user agent with every
request, so the processor pays for a parse once per distinct string, not per
event (the measurement is in benchmarks/README.md).
"""

from __future__ import annotations

import functools

import ua_parser

COLUMNS = ("ua_browser", "ua_browser_version", "ua_os", "ua_os_version", "ua_device", "ua_is_bot")
EMPTY = ("", "", "", "", "", False)
# Longer strings are cut before parsing: every real user agent fits, and a hostile one costs no more.
MAX_CHARS = 1024


def _version(part) -> str:
    return ".".join(v for v in (part.major, part.minor, part.patch) if v) if part is not None else ""


def _family(part) -> str:
    family = part.family if part is not None else ""
    return "" if family == "Other" else family


@functools.lru_cache(maxsize=16384)
def parse(user_agent: str) -> tuple[str, str, str, str, str, bool]:
    """(browser, browser version, OS, OS version, device family, is a bot) of ``user_agent``; empties for ''."""
    if not user_agent:
        return EMPTY
    result = ua_parser.parse(user_agent[:MAX_CHARS])
    device = _family(result.device)
    return (
        _family(result.user_agent),
        _version(result.user_agent),
        _family(result.os),
        _version(result.os),
        device,
        device == "Spider",
    )  # uap-core files crawlers under the device family "Spider"
