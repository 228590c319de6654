"""The six Segment calls, shared by `Client` and `AsyncClient`.

Each call only builds and queues its event, so it is a plain method in both
clients (no ``await``) and returns the event's ``messageId`` at once; the
clients differ only in how they queue and send (``_enqueue``).
"""

from __future__ import annotations

import datetime as dt

from eventpipe_sdk import message


class Calls:
    """Mixin: ``track``, ``identify``, ``page``, ``screen``, ``group`` and ``alias``.

    Every call needs a ``user_id`` or an ``anonymous_id`` (``alias`` needs a
    ``user_id``). Common keyword arguments: ``context`` (merged with
    ``context.library``), ``timestamp`` (a datetime; default: now),
    ``integrations`` and ``message_id`` (default: a new UUID). Invalid calls
    raise ``ValueError``/``TypeError`` at once; events that cannot be
    delivered later are dropped and counted in ``stats``.
    """

    def _enqueue(self, encoded: bytes) -> None:  # pragma: no cover - provided by each client
        raise NotImplementedError

    def track(
        self,
        event: str,
        *,
        user_id=None,
        anonymous_id=None,
        properties: dict | None = None,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record that a user did something (``event``, e.g. "Order Completed")."""
        if not isinstance(event, str) or not event:
            raise ValueError("track: event must be a non-empty string")
        return self._call(
            "track",
            {"event": event, "properties": _dict(properties, "properties")},
            user_id,
            anonymous_id,
            context,
            timestamp,
            integrations,
            message_id,
        )

    def identify(
        self,
        *,
        user_id=None,
        anonymous_id=None,
        traits: dict | None = None,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Say who a user is and what is known about them (``traits``: email, plan, ...)."""
        return self._call(
            "identify",
            {"traits": _dict(traits, "traits")},
            user_id,
            anonymous_id,
            context,
            timestamp,
            integrations,
            message_id,
        )

    def page(
        self,
        name: str | None = None,
        *,
        category: str | None = None,
        properties: dict | None = None,
        user_id=None,
        anonymous_id=None,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record a web page view."""
        fields = {"name": name, "category": category, "properties": _dict(properties, "properties")}
        return self._call("page", fields, user_id, anonymous_id, context, timestamp, integrations, message_id)

    def screen(
        self,
        name: str | None = None,
        *,
        category: str | None = None,
        properties: dict | None = None,
        user_id=None,
        anonymous_id=None,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record a mobile app screen view."""
        fields = {"name": name, "category": category, "properties": _dict(properties, "properties")}
        return self._call("screen", fields, user_id, anonymous_id, context, timestamp, integrations, message_id)

    def group(
        self,
        group_id,
        *,
        traits: dict | None = None,
        user_id=None,
        anonymous_id=None,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Put a user in a group (an account, company or team) with the group's ``traits``."""
        if group_id is None or group_id == "":
            raise ValueError("group: group_id is required")
        return self._call(
            "group",
            {"groupId": str(group_id), "traits": _dict(traits, "traits")},
            user_id,
            anonymous_id,
            context,
            timestamp,
            integrations,
            message_id,
        )

    def alias(
        self,
        previous_id,
        *,
        user_id,
        context: dict | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict | None = None,
        message_id: str | None = None,
    ) -> str:
        """Join two identities: ``previous_id`` (e.g. an anonymous id) becomes ``user_id``."""
        if previous_id is None or previous_id == "":
            raise ValueError("alias: previous_id is required")
        if user_id is None:
            raise ValueError("alias: user_id is required")
        return self._call(
            "alias", {"previousId": str(previous_id)}, user_id, None, context, timestamp, integrations, message_id
        )

    def _call(self, kind, fields, user_id, anonymous_id, context, timestamp, integrations, message_id) -> str:
        msg = message.build(
            kind,
            fields,
            user_id=user_id,
            anonymous_id=anonymous_id,
            context=context,
            timestamp=timestamp,
            integrations=integrations,
            message_id=message_id,
        )
        self._enqueue(message.encode(msg))
        return msg["messageId"]


def _dict(value, name: str):
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    return value
