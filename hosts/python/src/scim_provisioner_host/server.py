"""The server role: WIT `server.scim-server`, served over a Directory; plus a WSGI app."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from wasmtime.component import Variant

from ._codec import Err, Ok
from .config import ServerConfig
from ._session import RedactingLogger, Session
from .directory import Directory
from .errors import DirectoryError, GuestTrap, ProvisioningError
from .runtime import SERVER, Runtime
from .types import CmsUser, QueryPage, Request, ResourceKind, Response, Search, StoredResource, record

_KEYS = ("base_url", "token", "token_env", "max_results", "bulk_max_operations", "bulk_max_payload", "policy")


def _parse_config(config: Mapping[str, Any]) -> Any:
    import json
    if not isinstance(config, Mapping):
        raise ProvisioningError.invalid_config(f"the configuration is a mapping, not {type(config).__name__}")
    for key in config:
        if key not in _KEYS:
            raise ProvisioningError.invalid_config(f"unknown server setting '{key}'; known: {', '.join(_KEYS)}")
    base_url = config.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ProvisioningError.invalid_config("base_url is required")
    token = config.get("token")
    if config.get("token_env") is not None:
        token = os.environ.get(str(config["token_env"]), "")
        if not token:
            raise ProvisioningError.invalid_config(f"environment variable {config['token_env']} (token_env) is not set")
    if not isinstance(token, str) or not token:
        raise ProvisioningError.invalid_config("token or token_env is required: the bearer token clients must present")

    def whole(key: str, default: int, maximum: int) -> int:
        v = config.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= maximum:
            raise ProvisioningError.invalid_config(f"{key} must be a whole number from 1 to {maximum}")
        return v

    policy = config.get("policy", "")
    if isinstance(policy, Mapping):
        policy = json.dumps(policy, separators=(",", ":"), ensure_ascii=False) if policy else ""
    elif not isinstance(policy, str):
        raise ProvisioningError.invalid_config("policy is a mapping or a JSON string")
    return record(base_url=base_url, bearer_token=token, max_results=whole("max_results", 200, 0xFFFFFFFF),
                  bulk_max_operations=whole("bulk_max_operations", 100, 0xFFFFFFFF),
                  bulk_max_payload=whole("bulk_max_payload", 1024 * 1024, 2 ** 64 - 1), policy_json=policy)


class ScimServer(Session):
    """A SCIM 2.0 server over a Directory (WIT `scim-server`). Configuration::

        {"base_url": "https://joomla.example/api/scim/v2",  # absolute: meta.location, Location
         "token": "…",                 # or "token_env": the bearer token clients present
         "max_results": 200, "bulk_max_operations": 100, "bulk_max_payload": 1048576,
         "policy": {...}}              # its mapping, reversed, turns SCIM users into CMS users

    ``handle`` never fails for SCIM reasons; it raises GuestTrap when the guest trapped, after
    which the next request is served by a fresh instance.
    """

    _interface = SERVER
    _open_func = "[static]scim-server.open"

    def __init__(self, runtime: Runtime, config: ServerConfig, directory: Directory,
                 logger: Optional[logging.Logger] = None) -> None:
        wit = _parse_config(config)
        super().__init__(runtime, RedactingLogger(logger, [getattr(wit, "bearer-token")]))
        self._wit_config = wit
        self.directory = directory
        self.base_url: str = getattr(wit, "base-url")
        self.max_payload: int = getattr(wit, "bulk-max-payload")
        self._lock = threading.Lock()

    @classmethod
    def open(cls, runtime: Runtime, config: ServerConfig, directory: Directory,
             logger: Optional[logging.Logger] = None) -> "ScimServer":
        server = cls(runtime, config, directory, logger)
        server._ensure_open()
        return server

    def handle(self, request: Request) -> Response:
        """Answers one request (one at a time: a component instance is single-threaded)."""
        if not isinstance(request, Request):
            raise TypeError(f"expected a Request, not {type(request).__name__}")
        with self._lock:
            return Response.from_wit(self._invoke("[method]scim-server.handle", [request.to_wit()]))

    def __repr__(self) -> str:
        return f"ScimServer(base_url={self.base_url!r})"

    def _open_args(self) -> list[Any]:
        return [self._wit_config]

    def _open_error(self, error: Any) -> Exception:
        return ProvisioningError.from_wit(error)

    def _serve_http(self, request: Any) -> Any:
        return Err(Variant("denied", "the server role sends no HTTP requests"))

    def _serve_directory(self, func: str, args: Sequence[Any]) -> Any:
        d = self.directory
        try:
            kind = ResourceKind(args[0])
            if func == "get":
                found = d.get(kind, str(args[1]))
                # result<option<stored-resource>, …>: the Ok wrapper is what makes an error possible.
                return Ok(None if found is None else self._stored(found).to_wit())
            if func == "query":
                page = d.query(kind, Search.from_wit(args[1]))
                if not isinstance(page, QueryPage):
                    raise TypeError(f"query returned {type(page).__name__}, not a QueryPage")
                return Ok(page.to_wit())
            if func == "create":
                cms = None if args[2] is None else CmsUser.from_wit(args[2])
                return Ok(self._stored(d.create(kind, str(args[1]), cms)).to_wit())
            if func == "replace":
                cms = None if args[3] is None else CmsUser.from_wit(args[3])
                return Ok(self._stored(d.replace(kind, str(args[1]), str(args[2]), cms, args[4])).to_wit())
            if func == "delete":
                return Ok(bool(d.delete(kind, str(args[1]))))
            raise DirectoryError("other", f"unknown directory function {func}")
        except DirectoryError as e:
            return Err(e.to_wit())
        except sqlite3.Error as e:
            self.logger.error(f"directory {func}: {e}")
            return Err(Variant("unavailable", f"the database failed: {e}"))
        except Exception as e:
            self.logger.error(f"directory {func}: {type(e).__name__}: {e}")
            return Err(Variant("other", f"{type(e).__name__}: {e}"))

    @staticmethod
    def _stored(value: Any) -> StoredResource:
        if not isinstance(value, StoredResource):
            raise TypeError(f"the directory returned {type(value).__name__}, not a StoredResource")
        return value


def wsgi_app(server: ScimServer, prefix: str = "") -> Callable[..., Iterable[bytes]]:
    """A WSGI application answering SCIM under `prefix` (e.g. ``/scim/v2``) with `server`.
    Bodies larger than the server's max payload are cut at max payload + 1 byte, so the
    component answers 413; a guest trap answers 500 and the next request works."""
    prefix = prefix.rstrip("/")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            resp = Response.error(404, "not a SCIM path")
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(min(length, server.max_payload + 1)) if length > 0 else b""
            headers = [(k[5:].replace("_", "-").title(), v) for k, v in environ.items() if k.startswith("HTTP_")]
            if environ.get("CONTENT_TYPE"):
                headers.append(("Content-Type", environ["CONTENT_TYPE"]))
            if environ.get("CONTENT_LENGTH"):
                headers.append(("Content-Length", environ["CONTENT_LENGTH"]))
            req = Request(environ.get("REQUEST_METHOD", "GET"), path[len(prefix):] or "/",
                          environ.get("QUERY_STRING", ""), headers, body)
            try:
                resp = server.handle(req)
            except GuestTrap:
                resp = Response.error(500, "internal error")
        status = f"{resp.status} {_REASONS.get(resp.status, 'Status')}"
        headers = [(k, v) for k, v in resp.headers if k.lower() not in ("content-length", "connection")]
        headers.append(("Content-Length", str(len(resp.body))))
        start_response(status, headers)
        return [resp.body]

    return app


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            412: "Precondition Failed", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def serve(server: ScimServer, host: str = "127.0.0.1", port: int = 0, prefix: str = "/scim/v2") -> "ServedHttp":
    """Serves `server` over HTTP (wsgiref, threaded) in a background thread."""
    return ServedHttp(server, host, port, prefix)


class ServedHttp:
    def __init__(self, server: ScimServer, host: str, port: int, prefix: str) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        class _Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        self.httpd = make_server(host, port, wsgi_app(server, prefix), server_class=_Threading, handler_class=_Quiet)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}{prefix}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="scim-wsgi", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
