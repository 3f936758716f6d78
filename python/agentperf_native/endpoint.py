"""Endpoint addresses: the OpenAI-style base URL (``http://host:8000/v1``), completed when needed."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str  # e.g. "/v1", no trailing slash

    @classmethod
    def parse(cls, url: str) -> "Endpoint":
        """Parses an OpenAI SDK style ``base_url``. A URL without a path gets ``/v1``."""
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {url!r}: use http:// or https://")
        if not parts.hostname:
            raise ValueError(f"no host in URL {url!r}")
        path = parts.path.rstrip("/")
        for suffix in ("/chat/completions", "/completions"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
        if path == "":
            path = "/v1"
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), path)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    def path(self, api: str) -> str:
        """Request path for an API below the base, e.g. ``path("/chat/completions")``."""
        return self.base_path + api

    def request(self, api: str, api_key: str | None = None, body: bytes | None = None) -> urllib.request.Request:
        """A request for ``base/api`` (POST with a JSON body when ``body`` is given)."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"} if body is not None else {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return urllib.request.Request(self.base_url + api, data=body, headers=headers)

    def ssl_context(self, ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext | None:
        """The TLS settings the engine uses, for Python-side requests (None for http://)."""
        if self.scheme != "https":
            return None
        context = ssl.create_default_context(cafile=ca_file)
        if insecure:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context

    def get_json(self, api: str, api_key: str | None = None, timeout_s: float = 10.0,
                 ca_file: str | None = None, insecure: bool = False) -> dict:
        """GET ``base/api`` and decode JSON (pre-flight and manifest use; not on the hot path)."""
        request = self.request(api, api_key)
        with urllib.request.urlopen(request, timeout=timeout_s, context=self.ssl_context(ca_file, insecure)) as response:
            return json.loads(response.read().decode("utf-8"))

    def list_models(self, api_key: str | None = None, ca_file: str | None = None, insecure: bool = False) -> list[str]:
        """Model ids from ``/v1/models``. Raises ConnectionError with an actionable message."""
        try:
            data = self.get_json("/models", api_key, ca_file=ca_file, insecure=insecure)
        except urllib.error.HTTPError as e:
            raise ConnectionError(f"GET {self.base_url}/models answered HTTP {e.code}: check the URL and --api-key-env") from e
        except (urllib.error.URLError, OSError) as e:
            hint = ("use --ca FILE to trust its certificate, or --insecure for a self-signed test setup"
                    if "CERTIFICATE_VERIFY_FAILED" in str(e) else "Is the server running?")
            raise ConnectionError(f"cannot reach {self.base_url}/models: {e}. {hint}") from e
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]
