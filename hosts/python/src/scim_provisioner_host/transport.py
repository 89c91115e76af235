"""The `http-client` import on Python's own HTTP stack (``http.client``)."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import time
from typing import Optional, Protocol, Union
from urllib.parse import urlsplit

from .errors import ProvisioningError, TransportError
from .types import HttpRequest, HttpResponse

__all__ = ["Transport", "HttpTransport", "origin_of", "oauth2_token_url"]

MAX_BODY_BYTES = 32 * 1024 * 1024
_CHUNK = 256 * 1024


class Transport(Protocol):
    """Sends one request and returns the answer, whatever its status; raises TransportError."""

    def send(self, request: HttpRequest) -> HttpResponse: ...


def origin_of(url: str) -> Optional[tuple[str, str, int]]:
    """(scheme, host, port) of an absolute http(s) URL; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else (443 if scheme == "https" else 80)


def oauth2_token_url(policy_json: str) -> Optional[str]:
    """The token endpoint the policy's ``oauth2`` section names (OAuth 2.0 client credentials:
    the connector's basic credentials are the client's id and secret, sent only there), if any.
    A policy that does not parse names none; the component reports it when the connector opens."""
    try:
        policy = json.loads(policy_json) if policy_json.strip() else {}
    except ValueError:
        return None
    section = policy.get("oauth2") if isinstance(policy, dict) else None
    url = section.get("token_url") if isinstance(section, dict) else None
    return url.strip() if isinstance(url, str) else None


def _safe_url(url: str) -> str:
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


class HttpTransport:
    """Transport on ``http.client``: TLS verified with the default context (or ``ca_file``), the
    request's own timeout for the whole exchange, no redirects (a 302 is data), only the
    configured origin (anything else is ``denied``; with ``token_url``, an OAuth 2.0 token
    endpoint, its origin too), response bodies capped (32 MiB; more is ``other``). Logs method,
    URL, status and time only. One kept-alive connection per origin.
    """

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: Optional[str] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        logger: Optional[object] = None,
        token_url: Optional[str] = None,
    ) -> None:
        origin = origin_of(base_url)
        if origin is None:
            raise ProvisioningError.invalid_config(f"base_url {base_url} is not an absolute http(s) URL")
        self.origin = origin
        self.origins = [origin]
        if token_url is not None:
            token_origin = origin_of(token_url)
            if token_origin is None:
                raise ProvisioningError.invalid_config(f"token_url {token_url} is not an absolute http(s) URL")
            self.origins.append(token_origin)
        self.max_body_bytes = max_body_bytes
        self._logger = logger
        needs_tls = any(scheme == "https" for scheme, _, _ in self.origins)
        self._ssl = ssl.create_default_context(cafile=ca_file) if needs_tls else None
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def _log(self, level: str, message: str) -> None:
        if self._logger is not None:
            getattr(self._logger, level)(message)

    def _connection(self, origin: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
        conn = self._conns.get(origin)
        if conn is not None and conn.sock is not None:
            # Reuse only a connection the server has not closed meanwhile.
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                conn.sock.settimeout(timeout)
                return conn
        if conn is not None:
            conn.close()
        scheme, host, port = origin
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self._conns[origin] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def send(self, request: HttpRequest) -> HttpResponse:
        origin = origin_of(request.url)
        if origin is None:
            raise TransportError("invalid-url", "only absolute http and https URLs are allowed: " + _safe_url(request.url))
        if origin not in self.origins:
            raise TransportError("denied", f"{origin[0]}://{origin[1]}:{origin[2]} is not the configured SCIM origin")
        parts = urlsplit(request.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = max(1, request.timeout_ms) / 1000
        deadline = time.monotonic() + timeout
        what = f"{request.method} {_safe_url(request.url)}"
        started = time.perf_counter()
        try:
            conn = self._connection(origin, timeout)
            conn.putrequest(request.method, target, skip_accept_encoding=True)
            for name, value in request.headers:
                if re.search(r"[\r\n]", name + value):
                    raise TransportError("other", f"header {name} holds a line break")
                conn.putheader(name, value)
            if request.body is not None:
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body)
            sock = conn.sock  # kept: getresponse() drops conn.sock when the server closes after answering
            self._remaining(sock, deadline)
            resp = conn.getresponse()
            body = bytearray()
            while True:
                self._remaining(sock, deadline)
                chunk = resp.read1(_CHUNK)  # returns after one receive, so the deadline is checked often
                if not chunk:
                    resp.read()  # completes the response (read1 leaves that to read), freeing the connection
                    break
                body += chunk
                if len(body) > self.max_body_bytes:
                    self.close()
                    self._log("warning", f"{what}: response body larger than {self.max_body_bytes} bytes; dropped")
                    raise TransportError("other", f"the response body is larger than {self.max_body_bytes} bytes")
            if resp.will_close:
                self.close()
            ms = int((time.perf_counter() - started) * 1000)
            self._log("debug", f"{what} -> {resp.status} ({ms} ms)")
            return HttpResponse(resp.status, resp.getheaders(), bytes(body))
        except TransportError:
            self.close()
            raise
        except (socket.timeout, TimeoutError):
            self.close()
            self._log("info", f"{what}: timeout after {request.timeout_ms} ms")
            raise TransportError("timeout") from None
        except (ssl.SSLError, ssl.CertificateError) as e:
            self.close()
            self._log("info", f"{what}: tls ({e})")
            raise TransportError("tls", str(e)) from None
        except (ConnectionError, socket.gaierror, http.client.RemoteDisconnected, http.client.IncompleteRead) as e:
            self.close()
            self._log("info", f"{what}: cannot-connect ({e})")
            raise TransportError("cannot-connect", f"{type(e).__name__}: {e}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.close()
            self._log("info", f"{what}: other ({e})")
            raise TransportError("other", f"{type(e).__name__}: {e}") from None

    @staticmethod
    def _remaining(sock: Optional[socket.socket], deadline: float) -> None:
        """Bounds the next socket operation by what is left of the whole exchange's timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if sock is not None:
            try:
                sock.settimeout(left)
            except OSError:
                pass
