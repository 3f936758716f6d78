"""Trajectories: schema v1 files, importers of recorded agent runs and traces, token-exact prompts for
token-only traces, the synthetic generator, and set statistics.

- :func:`load` reads schema v1 JSONL or any importable format into
  :class:`~agentperf_native.workload.Conversation` objects; :func:`write_jsonl` writes schema v1.
- :func:`convert_files` is ``agentperf-native trajectories convert``; :func:`detect_format` tells
  formats apart.
- :mod:`.tokens`: offline tokenizers and :func:`turn_prompt_blocks` / :func:`prompt_token_ids` /
  :func:`prompt_text` for token-only turns.
- :mod:`.synth`: :class:`SynthConfig` and :func:`generate`; :mod:`.stats`: :func:`compute_stats`.

``trajectories/SCHEMA.md`` documents the format; ``trajectories/README.md`` the importers and the
bundled set.
"""

from .detect import FORMATS, detect_format, source_files
from .importers import ImportOptions, ImportResult, SourceError
from .importers.common import format_hint
from .loader import BadSources, convert_files, import_file, load, load_native, write_jsonl
from .schema import SCHEMA_ID, TrajectoryError, conversation_from_dict, conversation_to_dict, turn_metadata
from .stats import TrajectoryStats, format_stats
from .stats import compute as compute_stats
from .synth import SynthConfig, generate
from .tokens import (ENCODINGS, Tokenizer, TokenizerError, block_token_ids, load_tokenizer, prompt_text,
                     prompt_token_ids, turn_prompt_blocks)

__all__ = [
    "BadSources", "ENCODINGS", "FORMATS", "ImportOptions", "ImportResult", "SCHEMA_ID", "SourceError", "SynthConfig", "Tokenizer",
    "TokenizerError", "TrajectoryError", "TrajectoryStats", "block_token_ids", "compute_stats", "conversation_from_dict",
    "conversation_to_dict", "convert_files", "detect_format", "format_hint", "format_stats", "generate", "import_file", "load",
    "load_native", "load_tokenizer", "prompt_text", "prompt_token_ids", "source_files", "turn_metadata",
    "turn_prompt_blocks", "write_jsonl",
]
