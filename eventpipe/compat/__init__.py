"""Library internals behind one module per library, each private name checked at start-up and in CI.

eventpipe needs a few things aiokafka and faust-streaming have no public API
for (see each module's docstring for what and why). Every private name of a
library is used in its module here and nowhere else — ``aiokafka.py``,
``faust.py`` — so an upgrade has one file to read. Each module's ``check()``
looks up every name it uses on the installed library and raises `CompatError`
naming all that are missing; the collector and the processor call it at
start, tests/test_compat.py calls it in CI. Both libraries are pinned in
pyproject.toml to the versions these modules were written against.
"""

from __future__ import annotations


class CompatError(RuntimeError):
    """The installed library lacks an internal eventpipe relies on."""


def require(library: str, version: str, missing: list[str]) -> None:
    """Raise one `CompatError` naming every missing internal of ``library``, or return."""
    if missing:
        raise CompatError(
            f"{library} {version} lacks internals eventpipe uses: {'; '.join(missing)}. eventpipe pins the "
            f"version it was written against (pyproject.toml); after an upgrade adapt eventpipe/compat/"
            f"{library.split('-')[0]}.py"
        )
