#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into cpp/fuzz/corpus/<target>/ (committed; rerun
after changing a seed here or in tests/data/sse). Each seed is the target's control byte followed by the bytes it parses
(see the header of each cpp/fuzz/fuzz_*.cpp)."""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHAT_CHUNK = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
              b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
ROLE_CHUNK = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
USAGE_CHUNK = (b'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,'
               b'"prompt_tokens_details":{"cached_tokens":8}}}\n\n')
DONE = b"data: [DONE]\n\n"


def sse_seeds():
    # The recorded streams of the SSE parser's tests (tests/data/sse), and a few more.
    recorded = {f"recorded_{p.stem}": p.read_bytes() for p in sorted((HERE.parents[1] / "tests/data/sse").glob("*.txt"))}
    return {**recorded,
        "chat_stream": ROLE_CHUNK + CHAT_CHUNK * 2 + USAGE_CHUNK + DONE,
        "crlf_and_comments": b": keep-alive\r\n\r\nevent: message\r\ndata: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\n"
                             + b"data: [DONE]\r\n\r\n",
        "bare_cr_multiline": b"data: {\"choices\":\r[{\"delta\":\rdata: {\"reasoning_content\":\"x\"}}]}\r\r",
        "error_event": b"event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n",
        "malformed_and_tools": b"data: not json\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"t\"}]}}]}\n\n",
        "llama_cpp_usage": b"data: {\"choices\":[{\"delta\":{\"content\":\"\\u00e9\\\"q\"}}],"
                           b"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"prompt_cache_hit_tokens\":4}}\n\n",
        "partial_tail": CHAT_CHUNK + b"data: {\"choices\":[{\"delta\":{\"content\":\"cut",
    }


def chunked(*parts, ext=b"", trailers=b""):
    out = b""
    for p in parts:
        out += b"%x%s\r\n%s\r\n" % (len(p), ext, p)
    return out + b"0\r\n" + trailers + b"\r\n"


def http1_seeds():
    sse_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return {
        "sse_chunked": sse_head + chunked(ROLE_CHUNK, CHAT_CHUNK, USAGE_CHUNK + DONE),
        "content_length_keepalive_twice": (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}") * 2,
        "error_close": b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 20\r\n\r\n{\"error\":\"internal\"}",
        "interim_then_chunked_trailers": b"HTTP/1.1 100 Continue\r\n\r\n" + sse_head
                                         + chunked(CHAT_CHUNK, ext=b";x=y", trailers=b"X-T: 1\r\n"),
        "http10_until_close": b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nbody until the connection closes",
        "no_body_204_then_304": b"\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
                                b"HTTP/1.1 304 Not Modified\r\n\r\n",
        "te_gzip_chunked_and_list_length": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                                           b"Content-Length: 3, 3\r\n  folded\r\n\r\n" + chunked(b"abc"),
        "truncated_chunk": sse_head + b"40\r\n" + CHAT_CHUNK[:20],
    }


def chat_body(messages, extra=b""):
    return b'{"model":"agentperf-sim","stream":true,"stream_options":{"include_usage":true,' \
           b'"continuous_usage_stats":false},"max_tokens":16,"min_tokens":2,"ignore_eos":false' + extra + \
           b',"messages":' + messages + b"}"


def sim_request_seeds():
    chat = 1 | (15 << 1)  # chat, blocks of 16 tokens
    completions = 0 | (3 << 1)  # completions, blocks of 4 tokens
    return {
        "chat": bytes([chat]) + chat_body(b'[{"role":"system","content":"[rid:0123456789abcdef] Be brief."},'
                                          b'{"role":"user","content":"q0 \\"quoted\\" \\u00e9"}]'),
        "chat_tools_nested": bytes([chat]) + chat_body(
            b'[{"role":"user","content":[{"type":"text","text":"hi"}]}]',
            b',"tools":[{"type":"function","function":{"name":"f","parameters":{"a":[1,2.5e3,-1,true,null]}}}]'),
        "completions_text": bytes([completions]) + b'{"prompt":"once upon a time","max_completion_tokens":8,"stream":false}',
        "completions_token_ids": bytes([completions]) + b'{"prompt":[1,2,3,4,5,6,7,8,9],"max_tokens":null,'
                                                        b'"stream_options":null}',
        "rejected_min_over_max": bytes([chat]) + b'{"messages":[],"max_tokens":2,"min_tokens":3}',
    }


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED = 1, 1, 4, 8


# HPACK: indexed fields of the static table (8: ":status: 200", 14: ":status: 500"); literals
# without indexing with an indexed name (0x0f 0x10: entry 31, content-type; 0x08: entry 8,
# :status), or with a new name (0x40).
STATUS_200, STATUS_500 = b"\x88", b"\x8e"
CONTENT_TYPE_SSE = b"\x0f\x10" + bytes([len(b"text/event-stream")]) + b"text/event-stream"


def http2_seeds():
    preface = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, 65535)) + frame(SETTINGS, ACK, 0)

    def response(stream, status=STATUS_200, end=True):
        out = frame(HEADERS, END_HEADERS, stream, status + CONTENT_TYPE_SSE)
        out += frame(DATA, 0, stream, ROLE_CHUNK) + frame(DATA, 0, stream, CHAT_CHUNK + USAGE_CHUNK)
        return out + frame(DATA, END_STREAM if end else 0, stream, DONE)

    return {
        # control byte: bits 0-1 requests - 1, bit 2 submit one more, bit 3 abandon the second,
        # bits 5-7 how the bytes are cut
        "one_stream": bytes([0]) + preface + response(1),
        "three_streams_cut": bytes([2 | (3 << 5)]) + preface + response(3) + response(1) + response(5),
        "abandon_and_submit": bytes([1 | 4 | 8 | (1 << 5)]) + preface + response(1) + frame(PING, 0, 0, b"12345678")
                              + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)) + response(5),
        "status_500_trailers": bytes([0]) + preface + frame(HEADERS, END_HEADERS, 1, STATUS_500)
                               + frame(DATA, 0, 1, b'{"error":"x"}')
                               + frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x40\x01x\x01y"),
        "rst_and_goaway": bytes([1]) + preface + frame(HEADERS, END_HEADERS, 1, STATUS_200)
                          + frame(RST_STREAM, 0, 1, struct.pack(">I", 2))
                          + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)),
        "continuation_padded_interim": bytes([7 << 5]) + preface + frame(HEADERS, 0, 1, b"\x08\x03103")
                                       + frame(CONTINUATION, END_HEADERS, 1, b"\x40\x01x\x01y")
                                       + frame(HEADERS, END_HEADERS, 1, STATUS_200)
                                       + frame(DATA, PADDED | END_STREAM, 1, b"\x04" + DONE + b"\0\0\0\0"),
        # "031": three digits, final to nghttp2, no HTTP status (found by fuzzing): the stream fails
        "status_below_100": bytes([7 << 5]) + preface + frame(HEADERS, END_HEADERS, 1, b"\x08\x03031")
                            + frame(DATA, END_STREAM, 1, DONE),
        "server_closes_early": bytes([3]) + preface + frame(HEADERS, END_HEADERS, 1, STATUS_200)
                               + frame(DATA, 0, 1, CHAT_CHUNK[:30]),
    }


def main():
    targets = {"fuzz_sse_parser": sse_seeds, "fuzz_http1_parser": http1_seeds,
               "fuzz_sim_request": sim_request_seeds, "fuzz_http2_session": http2_seeds}
    for target, make in targets.items():
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        seeds = make()
        for name, data in seeds.items():
            if target in ("fuzz_sse_parser", "fuzz_http1_parser"):
                data = bytes([2]) + data  # cut into pieces of 1..4 bytes
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
