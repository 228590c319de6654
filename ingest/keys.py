"""Write keys: which project a key feeds, checked in constant time, never shown.

This module is the one home of the write-key format; everything that needs
the keys (the collector's :class:`KeyRing`, ``eventpipe up``'s banner,
``eventpipe demo``) reads them with :func:`load_keys`.

Keys come from ``EVENTPIPE_WRITE_KEYS`` (``key=project,…``) and optionally a
file (``EVENTPIPE_WRITE_KEYS_FILE``), so a project can have several keys at
once: rotation is "add the new key, roll the collectors, move the clients,
remove the old key". A file is either JSON::

    {"acme": ["key-2026", "key-2025"], "beta": {"keys": ["k3"], "rate_limit_events_per_s": 500}}

or lines of ``key=project`` (``#`` starts a comment).

The rule for a ``key=project`` pair: **the last ``=`` splits it**. Keys are
base64-ish and may end in ``=`` padding (``abc===demo`` is key ``abc==``,
project ``demo``); a project name never contains ``=``. Space around either
part is dropped; an empty key or project is an error that names the entry's
position, never the key. The same key given twice for one project is fine,
for two projects an error.

A presented key is never compared with the stored ones character by
character: both sides are hashed with a per-process random salt (keyed
BLAKE2b) and the digest is looked up, so the time a lookup takes says nothing
about how much of a key an attacker guessed right. Keys never appear in logs
or errors (a short fingerprint names a key where one must), and
:func:`redact` removes them from bodies before those go to Kafka.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from eventpipe.ingest.ratelimit import TokenBucket

# Keys that redact() can replace as whole JSON strings without changing the JSON's meaning elsewhere.
_REDACTABLE = re.compile(r"[A-Za-z0-9_\-.~+/=]{8,512}")


@dataclass(slots=True)
class WriteKey:
    """What a valid key grants: its project, and its own rate limit if one is set."""

    project: str
    bucket: TokenBucket | None = None


def fingerprint(key: str) -> str:
    """A short, non-reversible name for a key in error messages and logs."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


class KeyRing:
    def __init__(self, projects: dict[str, tuple[str, float]]):
        """``projects`` maps each key to (project, events/s limit or 0)."""
        self._salt = os.urandom(16)
        self._by_digest = {
            self._digest(key): WriteKey(project, TokenBucket(rate) if rate > 0 else None)
            for key, (project, rate) in projects.items()
        }
        self.projects = sorted({project for project, _ in projects.values()})

    def __len__(self) -> int:
        return len(self._by_digest)

    def _digest(self, key: str) -> bytes:
        return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), key=self._salt, digest_size=16).digest()

    def lookup(self, key: str) -> WriteKey | None:
        return self._by_digest.get(self._digest(key))

    @classmethod
    def from_settings(cls, settings) -> "KeyRing":
        return cls(load_keys(settings))


def load_keys(settings) -> dict[str, tuple[str, float]]:
    """Every key of ``settings`` (``write_keys`` and ``write_keys_file``) -> (project, events/s limit or 0)."""
    rate = settings.rate_limit_events_per_s
    keys: dict[str, tuple[str, float]] = {}
    for key, project in parse_pairs(settings.write_keys, "EVENTPIPE_WRITE_KEYS").items():
        keys[key] = (project, rate)
    if settings.write_keys_file:
        for key, entry in load_file(Path(settings.write_keys_file), rate).items():
            if key in keys and keys[key][0] != entry[0]:
                raise ValueError(f"write key {fingerprint(key)} is given for both {keys[key][0]!r} and {entry[0]!r}")
            keys[key] = entry
    return keys


def projects_by_key(settings) -> dict[str, str]:
    """Every key of ``settings`` -> its project (:func:`load_keys` without the limits)."""
    return {key: project for key, (project, _) in load_keys(settings).items()}


def parse_pairs(text: str, where: str, separator: str = ",") -> dict[str, str]:
    """``key=project`` pairs split at the last ``=`` (module docstring); errors name the position, never the key."""
    keys: dict[str, str] = {}
    for n, raw in enumerate(text.split(separator), 1):
        pair = raw.split("#", 1)[0].strip() if separator == "\n" else raw.strip()
        if not pair:
            continue
        key, sep, project = (part.strip() for part in pair.rpartition("="))
        if not sep or not key or not project:
            raise ValueError(f"{where}: entry {n}: expected key=project")
        if key in keys and keys[key] != project:
            raise ValueError(f"{where}: write key {fingerprint(key)} is given for both {keys[key]!r} and {project!r}")
        keys[key] = project
    return keys


def load_file(path: Path, default_rate: float) -> dict[str, tuple[str, float]]:
    """Keys of a JSON or ``key=project``-lines file (see the module docstring)."""
    text = path.read_text()
    if not text.lstrip().startswith("{"):
        return {key: (project, default_rate) for key, project in parse_pairs(text, str(path), "\n").items()}
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    keys: dict[str, tuple[str, float]] = {}
    for project, spec in doc.items():
        if isinstance(spec, list):
            spec = {"keys": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("keys"), list):
            raise ValueError(f'{path}: project {project!r}: expected a list of keys or {{"keys": [...]}}')
        rate = spec.get("rate_limit_events_per_s", default_rate)
        if not isinstance(rate, (int, float)) or rate < 0:
            raise ValueError(f"{path}: project {project!r}: rate_limit_events_per_s must be a number >= 0")
        for key in spec["keys"]:
            if not isinstance(key, str) or not key:
                raise ValueError(f"{path}: project {project!r}: every key must be a non-empty string")
            if key in keys and keys[key][0] != project:
                raise ValueError(
                    f"{path}: write key {fingerprint(key)} is given for both {keys[key][0]!r} and {project!r}"
                )
            keys[key] = (project, float(rate))
    return keys


def write_key_from_basic(header: str | None) -> str | None:
    """The username of an HTTP Basic Authorization header (Segment's write key)."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.partition(":")[0] or None


def redact(body: bytes, key: str) -> bytes:
    """``body`` with every JSON string equal to ``key`` emptied: no write key is stored with the events.

    Runs only for bodies that carry a key (``writeKey``); a plain byte
    replacement, so the body is not re-encoded. Keys outside a plain
    character set are left alone (they could not be replaced safely as bytes).
    """
    if not _REDACTABLE.fullmatch(key):
        return body
    return body.replace(b'"' + key.encode() + b'"', b'""')
