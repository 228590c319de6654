"""Analyst SQL from the command line, wherever the store is reachable.

chDB lets one process own a store directory. When the pipeline runs, the
processor owns it, so ``eventpipe query`` asks the processor's ``/query``
endpoint; when nothing runs (or a ClickHouse server is configured), it opens
the store itself.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from eventpipe.settings import Settings
from eventpipe.store import QueryResult, Store


class QueryError(RuntimeError):
    pass


def run_query(settings: Settings, sql: str, timeout: float = 30.0) -> QueryResult:
    if not settings.clickhouse_url:
        url = f"http://127.0.0.1:{settings.processor_web_port}/query"
        request = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                doc = json.load(resp)
            return QueryResult(doc["columns"], [tuple(r) for r in doc["rows"]])
        except urllib.error.HTTPError as exc:
            raise QueryError(json.load(exc).get("error", str(exc))) from None
        except (urllib.error.URLError, ConnectionError):
            pass  # no running processor: open the store directly
    store = Store(settings)
    try:
        return store.query(sql, readonly=True)
    except Exception as exc:  # noqa: BLE001 - ClickHouse's message is what the analyst needs
        raise QueryError(str(exc)) from None
    finally:
        store.close()


def format_table(result: QueryResult) -> str:
    cells = [[str(c) for c in result.columns]] + [[str(v) for v in row] for row in result.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})"
