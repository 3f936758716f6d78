"""The trajectory model: a Conversation is a system prompt (+ tools) and a list of Turns.

Written by the importers and the synthetic generator, read by the workload encoder. This module
imports nothing else of the package, so neither side imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class WorkloadError(ValueError):
    """A workload file or object is invalid; the message names the file, line and field."""


@dataclass
class Turn:
    """One model call. Chat conversations carry ``messages``; token-only traces carry ``hash_ids``."""

    messages: list[dict[str, Any]] | None = None  # messages appended since the previous call
    output_tokens: int | None = None  # recorded output length
    tool_delay_s: float = 0.0  # delay after this call before the next one is sent
    prompt_tokens: int | None = None  # recorded prompt tokens of this call (usage), if known
    cached_tokens: int | None = None  # recorded cached prompt tokens of this call, if known
    hash_ids: list[int] | None = None  # token-only: block hashes of the whole prompt of this call
    input_tokens: int | None = None  # token-only: prompt length in tokens (last block may be partial)
    metadata: dict[str, Any] = field(default_factory=dict)  # anything else the source recorded


@dataclass
class Conversation:
    turns: list[Turn]
    system: str | None = None
    id: str = ""
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions sent with every call
    metadata: dict[str, Any] = field(default_factory=dict)
    block_size: int | None = None  # token-only traces: tokens per hash block (64, 512, ...)
