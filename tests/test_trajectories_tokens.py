"""Offline tokenizers and token-exact prompts for token-only trajectories."""

import socket
from pathlib import Path

import pytest

pytest.importorskip("tiktoken", reason="token-exact prompts need tiktoken (and bpe-openai for its vocabularies)")

import agentperf_native as ap  # noqa: E402
from agentperf_native.trajectories import import_file, tokens  # noqa: E402
from agentperf_native.trajectories.tokens import (ENCODINGS, SYNTHETIC_TAIL_BIT, TokenizerError, block_token_ids,  # noqa: E402
                                                  block_vocabulary, load_tokenizer, prompt_text, prompt_token_ids,
                                                  turn_prompt_blocks)

DATA = Path(__file__).parent / "data" / "trajectories"


def shared_leading_blocks(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture(scope="module")
def kv():
    return import_file(DATA / "kv_cache_tester.json").conversations


def test_encodings_load_offline(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a tokenizer tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    load_tokenizer.cache_clear()
    for name in ENCODINGS:
        tok = load_tokenizer(name)
        assert tok.name == name and isinstance(tok, tokens.Tokenizer)
        assert tok.decode(tok.encode("def add(a, b): return a + b")) == "def add(a, b): return a + b"
    assert load_tokenizer("cl100k_base").encode("hello world") == [15339, 1917]
    assert load_tokenizer("o200k_base").vocab_size == 200019
    harmony = load_tokenizer("o200k_harmony")
    assert harmony.vocab_size > 200019 and harmony.encode("hello world") == load_tokenizer("o200k_base").encode("hello world")
    assert harmony.encode("<|start|>") != [200006]  # special-token text counts as text


def test_unknown_tokenizer_says_what_to_pass():
    with pytest.raises(TokenizerError, match="cl100k_base, o200k_base, o200k_harmony, or the path of a tokenizer.json"):
        load_tokenizer("llama-nope")


def test_block_content_is_deterministic_and_prefix_stable():
    tok = load_tokenizer("cl100k_base")
    a = block_token_ids(42, 64, tok)
    assert a == block_token_ids(42, 64, tok) and len(a) == 64
    assert block_token_ids(42, 10, tok) == a[:10]
    assert block_token_ids(43, 64, tok) != a
    assert block_token_ids(42, 64, tok, salt=7) != a
    assert block_token_ids(2**63 + 5, 3, tok) == block_token_ids(2**63 + 5, 3, tok)
    assert block_token_ids(1, 0, tok) == []
    vocab = set(block_vocabulary(tok).ids.tolist())
    assert set(a) <= vocab


def test_prompt_blocks_cover_the_input_and_borrow_tails_from_later_turns(kv):
    parent, sub = kv
    for conv in kv:
        for k, turn in enumerate(conv.turns):
            blocks = turn_prompt_blocks(conv, k)
            assert sum(n for _, n in blocks) == turn.input_tokens
            assert [h for h, _ in blocks[:len(turn.hash_ids)]] == turn.hash_ids
    ids = [t.hash_ids for t in parent.turns]
    assert turn_prompt_blocks(parent, 0)[-1] == (ids[1][3], 200 - 192)  # tail = start of turn 1's 4th block
    assert turn_prompt_blocks(parent, 1)[-1] == (ids[2][5], 330 - 320)
    tail2 = turn_prompt_blocks(parent, 2)[-1]
    assert tail2[1] == 16 and tail2[0] >= SYNTHETIC_TAIL_BIT  # turn 3 does not extend turn 2
    assert turn_prompt_blocks(sub, 0)[-1] == (sub.turns[1].hash_ids[2], 2)
    assert turn_prompt_blocks(sub, 1) == [(h, 64) for h in sub.turns[1].hash_ids]  # 192 = 3 full blocks


def test_mooncake_prompts_use_the_recorded_partial_last_block():
    conv = import_file(DATA / "mooncake.jsonl").conversations[0]
    assert turn_prompt_blocks(conv, 0) == [(0, 512), (1, 512), (2, 76)]
    assert turn_prompt_blocks(conv, 2) == [(0, 512), (1, 512), (3, 512), (5, 512)]


@pytest.mark.parametrize("name", ENCODINGS)
def test_text_prompts_encode_to_exactly_the_recorded_input_tokens(kv, name):
    tok = load_tokenizer(name)
    for conv in kv:
        for k, turn in enumerate(conv.turns):
            ids = prompt_token_ids(conv, k, tok)
            text = prompt_text(conv, k, tok)
            assert len(ids) == turn.input_tokens
            assert tok.encode(text) == ids


def test_consecutive_turns_share_exactly_the_recorded_leading_blocks(kv):
    tok = load_tokenizer("cl100k_base")
    for conv in kv:
        for k in range(len(conv.turns) - 1):
            recorded = shared_leading_blocks(conv.turns[k].hash_ids, conv.turns[k + 1].hash_ids)
            a, b = turn_prompt_blocks(conv, k), turn_prompt_blocks(conv, k + 1)
            assert shared_leading_blocks(a, b) == recorded
            ta, tb = prompt_token_ids(conv, k, tok), prompt_token_ids(conv, k + 1, tok)
            bs = conv.block_size
            assert ta[:recorded * bs] == tb[:recorded * bs]
            if recorded < min(len(a), len(b)):  # the first block that differs has other content
                assert ta[recorded * bs:(recorded + 1) * bs] != tb[recorded * bs:(recorded + 1) * bs]


def test_salt_isolates_and_reserve_shortens(kv):
    tok = load_tokenizer("cl100k_base")
    conv = kv[0]
    assert prompt_token_ids(conv, 1, tok, salt=1)[:64] != prompt_token_ids(conv, 1, tok)[:64]
    short = prompt_text(conv, 1, tok, reserve_tokens=20)
    assert tok.encode(short) == prompt_token_ids(conv, 1, tok)[:-20]


def test_chat_turns_have_no_token_prompt():
    conv = ap.Conversation(turns=[ap.Turn(messages=[{"role": "user", "content": "x"}])], id="c")
    with pytest.raises(ValueError, match="chat turn"):
        turn_prompt_blocks(conv, 0)


def test_a_tokenizer_json_on_disk_is_token_exact_too(tmp_path, kv):
    hf = pytest.importorskip("tokenizers", reason="tokenizer.json support needs the tokenizers package")
    import random
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(600)})
    corpus = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(400)]
    model = hf.Tokenizer(hf.models.BPE())
    model.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = hf.decoders.ByteLevel()
    model.train_from_iterator(corpus, hf.trainers.BpeTrainer(vocab_size=6000, show_progress=False,
                                                             initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    model.save(str(path))
    tok = load_tokenizer(str(tmp_path))  # a folder holding tokenizer.json works too
    assert tok.name == str(path) and len(block_vocabulary(tok)) >= 256
    for conv in kv:
        for k, turn in enumerate(conv.turns):
            assert tok.encode(prompt_text(conv, k, tok)) == prompt_token_ids(conv, k, tok)
            assert len(prompt_token_ids(conv, k, tok)) == turn.input_tokens


class CharTokenizer:
    """One token per character: no token is a space and a word, so text cannot carry blocks."""

    name = "chars"
    vocab_size = 128

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_a_tokenizer_without_single_token_words_is_refused_with_the_alternative():
    with pytest.raises(TokenizerError, match="send token-id prompts instead"):
        block_vocabulary(CharTokenizer())
