"""A small ASGI app streaming OpenAI-style SSE, served by hypercorn in the HTTP/2 peer tests.

POST /v1/chat/completions answers with `max_tokens` content events (default 20), one every
`SSE_APP_ITL_S` seconds (default 0.002) after `SSE_APP_TTFT_S` (default 0.02), then a usage event
and [DONE]. GET /v1/models lists one model.
"""

import asyncio
import json
import os

TTFT_S = float(os.environ.get("SSE_APP_TTFT_S", "0.02"))
ITL_S = float(os.environ.get("SSE_APP_ITL_S", "0.002"))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "GET" and scope["path"].endswith("/models"):
        payload = json.dumps({"object": "list", "data": [{"id": "peer-model", "object": "model"}]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    request = json.loads(body or b"{}")
    n = int(request.get("max_tokens") or 20)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    await asyncio.sleep(TTFT_S)
    for i in range(n):
        chunk = {"choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(), "more_body": True})
        if i + 1 < n:
            await asyncio.sleep(ITL_S)
    usage = {"choices": [], "usage": {"prompt_tokens": len(body) // 4, "completion_tokens": n}}
    await send({"type": "http.response.body", "body": f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()})
