"""``eventpipe verify``: do the rollups equal a recomputation from the raw events?

Rollups are what dashboards read; if they drift from ``events`` (a double-counted
replay, a lost partial state) every chart lies quietly. This recomputes each
rollup's keys from the raw table and compares counts and revenue exactly and
unique users through identical ``uniq`` states, key by key, in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

USERS = "if(user_id != '', user_id, anonymous_id)"
ROLLUPS = {"events_1m": ("minute", "toStartOfMinute(timestamp)"), "events_1h": ("hour", "toStartOfHour(timestamp)")}
KEYS = "project, event, platform, app_version"


@dataclass
class RollupCheck:
    table: str
    keys: int
    only_in_rollup: int
    only_in_raw: int

    @property
    def ok(self) -> bool:
        return self.only_in_rollup == 0 and self.only_in_raw == 0


def rollup_sql(table: str, rollup_where: str = "", raw_where: str = "") -> tuple[str, str]:
    """The rollup's rows and their recomputation from raw, comparable row by row; optionally only some keys
    (``eventpipe forget`` checks the keys it recomputed)."""
    column, expr = ROLLUPS[table]
    rollup = (
        f"SELECT {KEYS}, {column} AS t, sum(events) AS n, uniqMerge(users) AS u, sum(revenue) AS r "
        f"FROM {table} {'WHERE ' + rollup_where + ' ' if rollup_where else ''}GROUP BY {KEYS}, t"
    )
    raw = (
        f"SELECT {KEYS}, {expr} AS t, count() AS n, uniq({USERS}) AS u, sum(revenue) AS r "
        f"FROM events {'WHERE ' + raw_where + ' ' if raw_where else ''}GROUP BY {KEYS}, t"
    )
    return rollup, raw


def verify(query) -> list[RollupCheck]:
    """``query(sql) -> rows``; one check per rollup table."""
    checks = []
    for table in ROLLUPS:
        rollup, raw = rollup_sql(table)
        keys = query(f"SELECT count() FROM ({raw})")[0][0]
        extra = query(f"SELECT count() FROM (({rollup}) EXCEPT ({raw}))")[0][0]
        missing = query(f"SELECT count() FROM (({raw}) EXCEPT ({rollup}))")[0][0]
        checks.append(RollupCheck(table, int(keys), int(extra), int(missing)))
    return checks
