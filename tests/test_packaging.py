"""What `pip install` puts on a user's machine: one `eventpipe` namespace, and an SDK that stands alone.

Generic top-level names (`schemas`, `sdk`, `ingest`) would collide with a user's own modules, and an app
that only sends events must not inherit chDB, faust and pyarrow. These tests build the real wheels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from eventpipe.stack import eventpipe_command

ROOT = Path(__file__).resolve().parents[1]


def _wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_installs_only_the_eventpipe_namespace(tmp_path):
    names = zipfile.ZipFile(_wheel(ROOT, tmp_path)).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"eventpipe", "eventpipe-0.1.0.dist-info"}, top
    # the role folders of the repository arrive inside the namespace, data files included
    for path in (
        "eventpipe/ingest/app.py",
        "eventpipe/processors/rows.py",
        "eventpipe/schemas/contract.py",
        "eventpipe/schemas/clickhouse/0001_events.sql",
        "eventpipe/schemas/events/order_completed.v1.json",
        "eventpipe/processors/dashboard/index.html",
        "eventpipe/broker_pom.xml",
    ):
        assert path in names, path
    assert not [n for n in names if n.startswith("eventpipe/sdk") or "eventpipe_sdk" in n]


def test_the_sdk_installs_alone_with_no_dependencies_and_passes_its_own_tests(tmp_path):
    wheel = _wheel(ROOT / "sdk", tmp_path / "dist")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    listed = json.loads(
        subprocess.run(
            [python, "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    )
    assert {p["name"] for p in listed} - {"pip", "setuptools"} == {"eventpipe-sdk"}, listed
    # its tests run from a copy, so `eventpipe_sdk` can only come from the installed wheel
    shutil.copytree(ROOT / "sdk" / "tests", tmp_path / "sdk_tests")
    out = subprocess.run(
        [python, "-m", "unittest", "discover", "-s", "sdk_tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stderr
    origin = subprocess.run(
        [python, "-c", "import eventpipe_sdk; print(eventpipe_sdk.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert str(env_dir) in origin


def test_a_users_own_folders_named_like_ours_change_nothing(tmp_path):
    """`eventpipe up` starts its children with `python -m`; a working directory holding folders called
    eventpipe/, schemas/ or sdk/ must not shadow the installed modules (the children use -P)."""
    for name in ("eventpipe", "schemas", "sdk", "ingest", "processors"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name}/ was imported')\n")
    (tmp_path / "schemas" / "clickhouse").mkdir()
    (tmp_path / "schemas" / "clickhouse" / "0001_wrong.sql").write_text("CREATE TABLE wrong (x UInt8) ENGINE = Memory")
    env = {**os.environ, "EVENTPIPE_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run(
        eventpipe_command("migrate"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    assert "0001_events" in out.stdout and "wrong" not in out.stdout
    # without -P the same command would have imported the user's eventpipe/: the test can tell them apart
    shadowed = subprocess.run(
        [c for c in eventpipe_command("migrate") if c != "-P"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shadowed.returncode != 0 and "the user's own eventpipe/ was imported" in shadowed.stderr
