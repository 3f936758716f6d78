"""Reading and writing trajectory files: schema v1 JSONL natively, every other format through its importer."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from .model import Conversation
from .detect import NATIVE, detect_format, source_files
from .importers import IMPORTERS, ImportOptions, ImportResult
from .importers.common import iter_jsonl
from .schema import TrajectoryError, conversation_from_dict, conversation_to_dict


def load_native(path: str | Path) -> list[Conversation]:
    """Reads a schema v1 JSONL file. Errors name the file, line and field, and say what to do."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such file; pass an existing .jsonl trajectory file")
    conversations: list[Conversation] = []
    first_line: dict[str, int] = {}
    for where, lineno, obj in iter_jsonl(path, "one trajectory object"):
        conv = conversation_from_dict(obj, where)
        if not conv.id:
            conv.id = f"{path.stem}-{lineno}"
        if conv.id in first_line:
            raise TrajectoryError(f"{where}: field 'id' repeats {conv.id!r} from line {first_line[conv.id]}; "
                                  "give every trajectory its own id")
        first_line[conv.id] = lineno
        conversations.append(conv)
    if not conversations:
        raise TrajectoryError(f"{path}: holds no trajectories; write one JSON object per line")
    return conversations


def import_file(path: str | Path, fmt: str | None = None, options: ImportOptions | None = None) -> ImportResult:
    """Converts one file of any known format (``fmt`` forces one; None detects it)."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such file; pass an existing trajectory file")
    fmt = fmt or detect_format(path)
    if fmt == NATIVE:
        return ImportResult(load_native(path))
    if fmt not in IMPORTERS:
        raise TrajectoryError(f"unknown format {fmt!r}; use one of {NATIVE}, {', '.join(IMPORTERS)}")
    result = IMPORTERS[fmt].convert(path, options or ImportOptions())
    # What an importer made must be what schema v1 accepts (convert writes it, load reads it back):
    # a source with, e.g., a message without a role fails here, naming the file and the field.
    for conv in result.conversations:
        conversation_from_dict(conversation_to_dict(conv), f"{path} (read as {fmt}), conversation {conv.id!r}")
    return result


def load(paths: str | Path | Iterable[str | Path], fmt: str | None = None,
         options: ImportOptions | None = None) -> list[Conversation]:
    """Conversations from files or folders of any known format (notes of the importers are dropped;
    use :func:`import_file` to see them)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    options = options or ImportOptions()
    conversations: list[Conversation] = []
    for p in source_files(list(paths)):
        conversations.extend(import_file(p, fmt, options).conversations)
    return conversations


def dump_lines(conversations: Iterable[Conversation]) -> Iterable[str]:
    for conv in conversations:
        yield json.dumps(conversation_to_dict(conv), ensure_ascii=False, separators=(",", ":")) + "\n"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_jsonl(conversations: Iterable[Conversation], path: str | Path) -> int:
    """Writes schema v1 JSONL atomically (a temporary file renamed into place); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    n = 0
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in dump_lines(conversations):
                f.write(line)
                n += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def unique_ids(conversations: list[Conversation]) -> int:
    """Makes ids unique in place (a repeat gets ``#2``, ``#3``...); returns how many were renamed."""
    seen: dict[str, int] = {}
    renamed = 0
    for conv in conversations:
        if conv.id in seen:
            seen[conv.id] += 1
            n = seen[conv.id]
            while f"{conv.id}#{n}" in seen:
                n += 1
            conv.id = f"{conv.id}#{n}"
            renamed += 1
        seen.setdefault(conv.id, 1)
    return renamed


class BadSources(TrajectoryError):
    """Source files that cannot be converted: ``bad`` holds (file, reason) for every one of them."""

    def __init__(self, bad: list[tuple[Path, str]], total: int) -> None:
        self.bad, self.total = bad, total
        super().__init__(f"{len(bad)} of {total} source files cannot be converted (nothing written):\n" +
                         "\n".join(f"  {reason}" for _, reason in bad))


def convert_files(sources: Iterable[str | Path], output: str | Path, fmt: str | None = None,
                  options: ImportOptions | None = None, *,
                  skipped: list[tuple[Path, str]] | None = None) -> list[tuple[Path, str, ImportResult]]:
    """Converts every source file (folders are searched) into one schema v1 JSONL file.

    Returns (file, format, result) per converted file. Every file is tried: when some cannot be
    converted, :class:`BadSources` names each with its reason and nothing is written; with
    ``skipped`` (a list) they are listed there instead and the others are written. Ids repeated
    across files get a ``#N`` suffix."""
    options = options or ImportOptions()
    results = []
    bad: list[tuple[Path, str]] = []
    conversations: list[Conversation] = []
    target = Path(output).resolve()
    paths = [p for p in source_files(list(sources)) if p.resolve() != target]  # not an earlier run's output
    for path in paths:
        try:
            name = fmt or detect_format(path)
            result = import_file(path, name, options)
        except TrajectoryError as e:
            bad.append((path, str(e) if str(e).startswith(str(path)) else f"{path}: {e}"))
            continue
        except UnicodeDecodeError:
            bad.append((path, f"{path}: not UTF-8 text; pass a JSON or JSON Lines trajectory file"))
            continue
        except OSError as e:
            bad.append((path, f"{path}: cannot read it ({e.strerror})"))
            continue
        results.append((path, name, result))
        conversations.extend(result.conversations)
    if bad and skipped is None:
        raise BadSources(bad, len(paths))
    if skipped is not None:
        skipped.extend(bad)
    if not conversations:
        raise TrajectoryError("the sources hold no model call to replay; nothing written")
    unique_ids(conversations)
    write_jsonl(conversations, output)
    return results
