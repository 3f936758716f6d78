"""Format detection: which importer reads a file, from its first JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .importers import IMPORTERS, SourceError
from .importers.common import json_problem

NATIVE = "native"
FORMATS = (NATIVE, *IMPORTERS)  # names accepted by --format
SOURCE_SUFFIXES = (".json", ".jsonl", ".traj")
_HEAD_LINES = 20


def _first_object(path: Path) -> Any:
    """The first JSON value of a JSON Lines file (the first parseable of its first lines), or the whole
    document of a (pretty-printed) JSON file."""
    try:
        with path.open("r", encoding="utf-8") as f:
            for _, line in zip(range(_HEAD_LINES), f):
                if not line.strip():
                    continue
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    if line.lstrip().startswith(("{", "[")) and path.suffix != ".jsonl":
                        break  # a pretty-printed document starts here
                    continue
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _raise_first_json_error(path: Path) -> None:
    """No JSON value was found at the start: say that the file is empty, or where its JSON breaks (the
    first line of a JSON Lines file, the document of a pretty-printed one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text; pass a JSON or JSON Lines trajectory file") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise SourceError(f"{path}: the file is empty; remove it or pass a trajectory file")
    try:
        json.loads(lines[first])
        return
    except json.JSONDecodeError as e:
        line_error = e
    if path.suffix != ".jsonl" and lines[first].lstrip().startswith(("{", "[")):
        try:
            json.loads(text)
            return
        except json.JSONDecodeError as e:
            raise SourceError(f"{path}: {json_problem(e, text)}; pass the whole JSON file") from None
    raise SourceError(f"{path}:{first + 1}: {json_problem(line_error, lines[first])}; each line must hold one "
                      "JSON object")


def sniff_native(obj: Any) -> bool:
    return isinstance(obj, dict) and (str(obj.get("schema", "")).startswith("agentperf.trajectory")
                                      or isinstance(obj.get("turns"), list))


def detect_format(path: str | Path) -> str:
    """The format name of ``path`` (one of :data:`FORMATS`); raises SourceError when none fits."""
    path = Path(path)
    obj = _first_object(path)
    if obj is None:
        _raise_first_json_error(path)
    if sniff_native(obj):
        return NATIVE
    for name, module in IMPORTERS.items():
        if module.sniff(obj):
            return name
    raise SourceError(f"{path}: cannot tell the format from its first JSON object", wrong_format=True)


def source_files(paths: list[str | Path]) -> list[Path]:
    """Files to read: each file as given; each folder's *.json, *.jsonl and *.traj files, recursively, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SOURCE_SUFFIXES)
                              and not f.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise SourceError(f"{p}: no such file or folder; pass an existing trajectory file or folder")
    return out
