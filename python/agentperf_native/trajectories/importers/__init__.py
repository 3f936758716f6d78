"""Importers: each turns one source file into schema v1 conversations.

An importer module has ``FORMAT`` (its name on the command line), ``sniff(obj)`` (does this first
JSON object look like mine?) and ``convert(path, options) -> ImportResult``.
"""

from __future__ import annotations

from types import ModuleType

from . import claude_code, kv_cache_tester, mini_swe_agent, mooncake, openai_messages, swe_agent
from .common import ImportOptions, ImportResult, SourceError

# Order matters for detection: the first whose sniff() accepts the first JSON object wins.
IMPORTERS: dict[str, ModuleType] = {m.FORMAT: m for m in (
    mooncake, kv_cache_tester, mini_swe_agent, swe_agent, claude_code, openai_messages)}

__all__ = ["IMPORTERS", "ImportOptions", "ImportResult", "SourceError"]
