"""docs/configuration.md is generated from the one settings object and must stay equal to it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from eventpipe.config_doc import render, sections
from eventpipe.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_committed_page_is_the_generated_one():
    assert DOC.read_text() == render(), (
        "docs/configuration.md is out of date: run  python -m eventpipe.config_doc > docs/configuration.md"
    )


def test_every_field_is_listed_once_with_a_machine_independent_default():
    text = render()
    for f in dataclasses.fields(Settings):
        assert text.count(f"`EVENTPIPE_{f.name.upper()}`") == 1, f.name
    assert str(Path.home()) not in text
    fields = {f.name: f for s in sections() for f in s.fields}
    assert fields["cache_dir"].default == "~/.cache/eventpipe"
    assert fields["max_batch_bytes"].default == str(Settings().max_batch_bytes)  # 500 * 1024, evaluated
    # a field without a comment shares the one above it only when they are about the same thing
    assert fields["bundle_max_bytes"].comment == fields["bundle_window_ms"].comment != []
    assert fields["max_batch_bytes"].comment != fields["write_keys"].comment


def test_module_prints_the_page():
    out = subprocess.run([sys.executable, "-m", "eventpipe.config_doc"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == render()
