"""docs/configuration.md, generated from the one settings object (``eventpipe.settings.Settings``).

    python -m eventpipe.config_doc > docs/configuration.md

Fields and types come from ``dataclasses.fields(Settings)``; defaults and
descriptions from the source of ``eventpipe/settings.py`` (parsed with ``ast``),
so the page shows ``~/.cache/eventpipe`` rather than one machine's home
directory, and ``500 * 1024`` as 512000.

How the comments in ``Settings`` are read:

* A comment block after a blank line (or at the top of the class) starts a
  section. Its first line is the section's title; text after a ``": "`` in
  that line is the section's introduction. Further lines of the block describe
  the field below it.
* Any other comment block describes the field directly below it.
* A field without a comment of its own shares the description of the
  commented field above it in the same run of lines when their names begin
  with the same word (``bundle_window_ms`` / ``bundle_max_bytes``); otherwise
  its description is empty.

tests/test_config_doc.py checks that the committed page equals this output.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from dataclasses import dataclass, field

from eventpipe import settings as settings_module
from eventpipe.settings import PREFIX, Settings

HEADER = """# Configuration reference

<!-- Generated from eventpipe/settings.py by `python -m eventpipe.config_doc > docs/configuration.md`.
     Do not edit by hand: tests/test_config_doc.py fails when this page and the settings differ. -->

Every part of eventpipe (collector, processor, CLI, tests) reads one settings object,
`eventpipe.settings.Settings`. Each field can be set from the environment as
`EVENTPIPE_<FIELD>` in upper case, for example `EVENTPIPE_KAFKA_BOOTSTRAP=broker:9092`.
`eventpipe up` passes the same values to every process it starts. A value that cannot be
read as the field's type stops the program with a message that names the variable.
"""


@dataclass
class Field:
    name: str
    type: str
    default: str
    comment: list[str] = field(default_factory=list)


@dataclass
class Section:
    title: str
    intro: str = ""
    fields: list[Field] = field(default_factory=list)


def _default_text(node: ast.expr, source: str) -> str:
    """A default as a reader wants it: values for constant expressions, paths as paths, else the source."""
    if isinstance(node, ast.Constant):
        return "" if node.value is None else ('""' if node.value == "" else str(node.value))
    if all(isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop)) for n in ast.walk(node)):
        return str(eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}}))  # noqa: S307
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Path"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    parts: list[str] = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
        parts.insert(0, str(node.right.value))
        node = node.left
    if parts and ast.unparse(node) == "Path.home()":
        return "~/" + "/".join(parts)
    return ast.get_source_segment(source, node) or ast.unparse(node)


def _type_text(annotation: str) -> str:
    kinds = [k.strip() for k in annotation.split("|")]
    names = {"str": "string", "int": "integer", "float": "number", "Path": "path"}
    shown = [names.get(k, k) for k in kinds if k != "None"]
    return " or ".join(shown) + (" (optional)" if "None" in kinds else "")


def sections() -> list[Section]:
    source = inspect.getsource(settings_module)
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == Settings.__name__)
    lines = source.splitlines()
    annotations = {f.name: f.type for f in dataclasses.fields(Settings)}

    out: list[Section] = []
    previous: Field | None = None  # the field right above
    first_line = cls.body[0].lineno
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name not in annotations:
            continue
        # the comment lines directly above this field, and whether a blank line (or the class top) precedes them
        i = node.lineno - 2
        block: list[str] = []
        while i >= 0 and lines[i].strip().startswith("#"):
            block.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        starts_section = node.lineno == first_line or (i >= 0 and not lines[i].strip()) or not out
        if starts_section and block:
            title, _, intro = block[0].partition(": ")
            out.append(Section(title.rstrip(":"), intro))
            block = block[1:]
        elif starts_section:
            out.append(Section("Other"))
        comment = block
        if (
            not comment
            and previous is not None
            and not starts_section
            and previous.name.split("_")[0] == name.split("_")[0]
        ):
            comment = previous.comment
        entry = Field(name, _type_text(annotations[name]), _default_text(node.value, source), comment)
        out[-1].fields.append(entry)
        previous = entry
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    parts = [HEADER]
    for section in sections():
        parts.append(f"\n## {section.title}\n")
        if section.intro:
            parts.append(f"\n{section.intro[0].upper()}{section.intro[1:]}\n")
        parts.append("\n| variable | type | default | meaning |\n| --- | --- | --- | --- |\n")
        for f in section.fields:
            default = f"`{_cell(f.default)}`" if f.default else "unset"
            parts.append(f"| `{PREFIX}{f.name.upper()}` | {f.type} | {default} | {_cell(' '.join(f.comment))} |\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
