"""Endpoint addresses and the tool's one-shot requests (model listing, pre-flight).

Every request the tool sends goes through the native client (``_core.http_request``): the same
connection, HTTP/1.1 or HTTP/2 session, TLS settings, headers and timeouts as the load. There is
no second HTTP stack in Python.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import _core


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the credentials of every URL in it (``https://user:pass@host`` ->
    ``https://***@host``) and every one of ``secrets`` (the API key, should a server echo it)
    replaced: what the tool writes (manifest, notes, messages) never holds them."""
    text = _USERINFO.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_all(obj: Any, secrets: tuple[str, ...] = ()) -> Any:
    """:func:`redact` applied to every string inside ``obj`` (dicts, lists, tuples)."""
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {k: redact_all(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_all(v, secrets) for v in obj]
    return obj


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str  # e.g. "/v1", no trailing slash

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        """Parses an OpenAI SDK style ``base_url``. A URL without a path gets ``/v1``. Credentials
        in it (``user:pass@``) are not used and never shown: pass an API key with --api-key-env."""
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        url = redact(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {url!r}: use http:// or https://")
        if not parts.hostname:
            raise ValueError(f"no host in URL {url!r}")
        try:
            port = parts.port
        except ValueError as e:
            raise ValueError(f"bad port in URL {url!r}: {e}") from None
        path = parts.path.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
        if path == "":
            path = "/v1"
        return cls(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    def path(self, api: str) -> str:
        """Request path for an API below the base, e.g. ``path("/chat/completions")``."""
        return self.base_path + api


@dataclass(frozen=True)
class Transport:
    """How the tool talks to the endpoint: the load's protocol, TLS and credentials."""

    protocol: str = "auto"        # h1 | h2 | auto (ALPN on https://; HTTP/1.1 on http://)
    api_key: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    timeout_s: float = 30.0


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    protocol: str = ""
    error_kind: str = ""          # "" when an HTTP answer came; else the engine's error kind
    error: str = ""

    @property
    def transient(self) -> bool:
        """A fault worth retrying: no answer (connect, reset, cut stream, timeout) or 429/5xx."""
        return bool(self.error_kind) or self.status in (429, 500, 502, 503, 504)

    def excerpt(self, limit: int = 200) -> str:
        text = self.body[:limit].decode("utf-8", "replace").strip()
        if not text:
            return "an empty body"
        if text.lstrip().startswith("<"):
            return "an HTML page"
        return " ".join(text.split())


def fetch(endpoint: Endpoint, transport: Transport, method: str, api: str, body: bytes = b"",
          *, stream: bool = False, root: bool = False) -> Response:
    """One request to ``base/api`` (``root``: to ``/api`` at the server's root, e.g. llama.cpp's
    ``/props``, Prometheus ``/metrics``) through the native client (blocking; releases the GIL)."""
    headers = [("Accept", "text/event-stream" if stream else "application/json")]
    if body:
        headers.append(("Content-Type", "application/json"))
    if transport.api_key:
        headers.append(("Authorization", f"Bearer {transport.api_key}"))
    protocol = transport.protocol
    if protocol == "auto" and endpoint.scheme == "http":
        protocol = "h1"
    raw = _core.http_request(endpoint.host, endpoint.port, method, api if root else endpoint.path(api), headers=headers, body=body,
                             protocol=protocol, tls=endpoint.scheme == "https", tls_verify=not transport.insecure,
                             ca_file=transport.ca_file or "", timeout_s=transport.timeout_s)
    return Response(status=int(raw["status"]), body=bytes(raw["body"]), headers=list(raw["headers"]),
                    protocol=str(raw["protocol"]), error_kind=str(raw["error_kind"]), error=str(raw["error"]))


def base_url_hint(endpoint: Endpoint) -> str:
    """What to check when the server answers, but not as an OpenAI-compatible API at this path."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return (f"check that --url is the API's base URL (OpenAI-compatible servers serve it under /v1, e.g. "
            f"{endpoint.scheme}://{host}:{endpoint.port}/v1)")


def _hint(resp: Response, transport: Transport, endpoint: Endpoint) -> str:
    err = resp.error.lower()
    if "certificate" in err or "verify" in err:
        return "use --ca FILE to trust its certificate, or --insecure for a self-signed test setup"
    if resp.error_kind == "protocol" and transport.protocol == "h2":
        return "the server may not speak HTTP/2 (h2c) on this port: try --protocol h1"
    if resp.error_kind in ("protocol", "truncated", "reset") and resp.status == 0 and transport.protocol != "h2":
        return "no HTTP/1.1 answer came: if the server speaks only HTTP/2 without TLS (h2c), use --protocol h2"
    if resp.error_kind == "connect":
        return "is the server running, and is the URL right?"
    return "check the URL"


def list_models(endpoint: Endpoint, transport: Transport) -> tuple[list[str], dict, str | None]:
    """Model ids (and the raw listing) from ``/v1/models``; the third value is a note when the
    listing was not usable (404, not JSON) — the caller decides whether that is fatal (it is only
    when no ``--model`` was given). Raises ConnectionError when the server cannot be reached."""
    for _ in range(3):  # a transient fault (reset, no answer) is retried twice
        resp = fetch(endpoint, transport, "GET", "/models")
        if resp.error_kind not in ("reset", "truncated", "timeout", "protocol", "write"):
            break  # an answer, or a fault that a retry will not cure (refused, certificate)
    if resp.error_kind:
        raise ConnectionError(f"cannot reach {endpoint.base_url}/models: {resp.error}; "
                              f"{_hint(resp, transport, endpoint)}")
    if resp.status in (401, 403):
        raise ConnectionError(f"GET {endpoint.base_url}/models answered HTTP {resp.status}: the server wants "
                              "credentials; pass the key's environment variable with --api-key-env")
    if resp.status != 200:
        return [], {}, f"GET {endpoint.base_url}/models answered HTTP {resp.status} ({resp.excerpt()})"
    try:
        data = json.loads(resp.body.decode("utf-8"))
        listed = [m for m in data.get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return [], {}, f"GET {endpoint.base_url}/models did not answer a JSON model listing (it answered {resp.excerpt()})"
    return [str(m.get("id", "")) for m in listed], data, None
