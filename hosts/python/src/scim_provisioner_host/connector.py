"""The client role: WIT `client.connector`."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import AbstractSet, Any, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from wasmtime.component import Record, Variant

from ._codec import Err, Ok
from .config import ConnectorConfig
from ._session import RedactingLogger, Session
from .errors import DirectoryError, ProvisioningError, TransportError
from .runtime import CLIENT, Runtime
from .transport import HttpTransport, Transport, oauth2_token_url
from .types import (BatchItem, BatchOutcome, CmsUser, HttpRequest, HttpResponse, Link, Plan, ProvisionOutcome,
                    RemoteListing, ServerCapabilities, UserEvent, _field_to_wit, record)

_OAUTH2_KEYS = ("token_url", "client_id", "client_secret", "client_secret_env", "scope", "audience", "resource",
                "client_auth")
_KEYS = ("base_url", "token", "token_env", "username", "password", "password_env", "timeout", "policy", "auth",
         *_OAUTH2_KEYS)
# How `scope-fields` names the user's id.
_SCOPE_ID_FIELD = "@id"


def _parse_config(config: Mapping[str, Any]) -> tuple[Any, list[str], str, str, int]:
    """The WIT connector-config, the secrets to redact, the auth kind, base URL and timeout."""
    if not isinstance(config, Mapping):
        raise ProvisioningError.invalid_config(f"the configuration is a mapping, not {type(config).__name__}")
    for key in config:
        if key not in _KEYS:
            raise ProvisioningError.invalid_config(f"unknown setting '{key}'; known: {', '.join(_KEYS)}")
    base_url = config.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ProvisioningError.invalid_config("base_url is required")

    def from_env(key: str) -> Optional[str]:
        if config.get(key) is None:
            return None
        value = os.environ.get(str(config[key]), "")
        if not value:
            raise ProvisioningError.invalid_config(f"environment variable {config[key]} ({key}) is not set")
        return value

    secrets: list[str] = []
    auth: Any
    kind: str
    oauth2 = config.get("auth") == "oauth2"
    if config.get("auth") is not None and not oauth2:
        raise ProvisioningError.invalid_config("auth is 'oauth2' or left out (a token, basic or none)")
    if not oauth2:
        for key in _OAUTH2_KEYS:
            if config.get(key) is not None:
                raise ProvisioningError.invalid_config(f"{key} is an OAuth 2.0 setting: set auth = 'oauth2' too")
    if oauth2:
        auth, secrets = _oauth2_credentials(config, from_env)
        kind = "oauth2"
    elif config.get("username") is not None:
        password = from_env("password_env") or config.get("password")
        if not isinstance(password, str) or not password:
            raise ProvisioningError.invalid_config("basic authentication needs password or password_env")
        username = str(config["username"])
        auth = record(username=username, password=password)  # auth is untagged: a Record is `basic`
        secrets = [password, base64.b64encode(f"{username}:{password}".encode()).decode()]
        kind = "basic"
    else:
        token = from_env("token_env")
        if token is None:
            token = config.get("token")
        if token is not None:
            if not isinstance(token, str) or not token:
                raise ProvisioningError.invalid_config("token must be a non-empty string")
            auth = token  # untagged: a str is `bearer`
            secrets = [token]
            kind = "bearer"
        else:
            auth = None  # untagged: None is `none`
            kind = "none"
    timeout = config.get("timeout", 30000)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 0xFFFFFFFF:
        raise ProvisioningError.invalid_config("timeout is a whole number of milliseconds (1 to 600000)")
    policy = config.get("policy", "")
    if isinstance(policy, Mapping):
        policy = json.dumps(policy, separators=(",", ":"), ensure_ascii=False) if policy else ""
    elif not isinstance(policy, str):
        raise ProvisioningError.invalid_config("policy is a mapping or a JSON string")
    if oauth2:
        policy = _with_oauth2_section(config, policy)
    wit = record(base_url=base_url, auth=auth, timeout_ms=timeout, policy_json=policy)
    return wit, secrets, kind, base_url, timeout


def _oauth2_credentials(config: Mapping[str, Any], from_env: Any) -> tuple[Any, list[str]]:
    """``auth = "oauth2"``: the client's id and secret as the WIT's basic credentials (with
    the policy's ``oauth2`` section the component sends them only to the token endpoint)."""
    for key in ("token", "token_env", "username", "password", "password_env"):
        if config.get(key) is not None:
            raise ProvisioningError.invalid_config(
                f"auth 'oauth2' takes client_id and client_secret or client_secret_env, not {key}")
    client_id = config.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise ProvisioningError.invalid_config("auth 'oauth2' needs client_id")
    secret = from_env("client_secret_env") or config.get("client_secret")
    if not isinstance(secret, str) or not secret:
        raise ProvisioningError.invalid_config("auth 'oauth2' needs client_secret or client_secret_env")
    # RFC 6749 section 2.3.1: form-encoded, then base64; the logs must not carry it either.
    encoded = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
    return record(username=client_id, password=secret), [secret, encoded]


def _with_oauth2_section(config: Mapping[str, Any], policy_json: str) -> str:
    """The policy JSON with the ``oauth2`` section built from the configuration's keys."""
    url = config.get("token_url")
    if not isinstance(url, str) or not url.strip():
        raise ProvisioningError.invalid_config("auth 'oauth2' needs token_url, the token endpoint")
    try:
        policy = json.loads(policy_json) if policy_json else {}
    except ValueError as e:
        raise ProvisioningError.invalid_config(f"policy is not JSON: {e}") from None
    if not isinstance(policy, dict):
        raise ProvisioningError.invalid_config("policy must be a JSON object")
    if "oauth2" in policy:
        raise ProvisioningError.invalid_config(
            "the policy's oauth2 section and auth 'oauth2' both set OAuth 2.0: keep the settings in the configuration")
    section: dict[str, str] = {}
    for key in ("token_url", "scope", "audience", "resource", "client_auth"):
        value = config.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ProvisioningError.invalid_config(f"{key} must be a string")
            section[key] = value.strip() if key == "token_url" else value
    policy["oauth2"] = section
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


class Connector(Session):
    """An open connection to one SCIM server under one provisioning policy, in its own
    component instance. Configuration (the same JSON shape as the PHP and Rust hosts)::

        {"base_url": "https://joomla.example/api/scim/v2",
         "token": "…",            # or "token_env": "SCIM_TOKEN"; or "username" + "password"/"password_env"
         "timeout": 30000,        # per request, ms
         "policy": {...}}         # the provisioning policy (a mapping or a JSON string)

    Raises ProvisioningError (what the component reports) and GuestTrap (after which the next
    call opens a fresh instance with the stored configuration). Secrets never appear in logs,
    errors or repr().
    """

    _interface = CLIENT
    _open_func = "[static]connector.open"

    def __init__(self, runtime: Runtime, config: ConnectorConfig, transport: Optional[Transport] = None,
                 logger: Optional[logging.Logger] = None) -> None:
        wit, secrets, kind, base_url, timeout = _parse_config(config)
        super().__init__(runtime, RedactingLogger(logger, secrets))
        self._wit_config = wit
        self.base_url = base_url
        self.auth_kind = kind
        self.timeout_ms = timeout
        # With the policy's `oauth2` section the component asks its token endpoint too.
        self.transport: Transport = transport if transport is not None else HttpTransport(
            base_url, logger=self.logger, token_url=oauth2_token_url(getattr(wit, "policy-json")))
        # What `plan` reads of a user (the `scope-fields` export), asked once per instance.
        self._scope_fields: list[str] = []
        self._scope_read: AbstractSet[str] = frozenset()

    @classmethod
    def open(cls, runtime: Runtime, config: ConnectorConfig, transport: Optional[Transport] = None,
             logger: Optional[logging.Logger] = None) -> "Connector":
        """Validates the configuration and opens a connector (WIT `connector.open`). Sends nothing."""
        connector = cls(runtime, config, transport, logger)
        connector._ensure_open()
        return connector

    def __repr__(self) -> str:
        return f"Connector(base_url={self.base_url!r}, auth={self.auth_kind!r}, timeout_ms={self.timeout_ms})"

    # -- the WIT methods -----------------------------------------------------------

    def test_connection(self) -> ServerCapabilities:
        """"Save and Test Credentials": what the server supports, or why it cannot be used."""
        return ServerCapabilities.from_wit(self._ok(self._invoke("[method]connector.test-connection", [])))

    def provision(self, user: CmsUser, event: Union[UserEvent, str], link: Optional[Link] = None) -> ProvisionOutcome:
        """Brings the remote user in line with one CMS user after `event`; store the outcome's link."""
        args = [self._user(user), UserEvent.of(event).value, None if link is None else self._link(link).to_wit()]
        return ProvisionOutcome.from_wit(self._ok(self._invoke("[method]connector.provision", args)))

    def provision_batch(self, items: Sequence[BatchItem]) -> BatchOutcome:
        """Provisions several users at once (through /Bulk where the server has it)."""
        wit = []
        for i, item in enumerate(items):
            if not isinstance(item, BatchItem):
                raise TypeError(f"item {i} is not a BatchItem but {type(item).__name__}")
            wit.append(item.to_wit())
        return BatchOutcome.from_wit(self._invoke("[method]connector.provision-batch", [wit]))

    def plan(self, user: CmsUser, event: Union[UserEvent, str], linked: bool) -> Plan:
        """What `provision` would do, decided without sending anything. Only what the scope reads
        (scope_fields) crosses into the component: each field passed costs a conversion and a copy
        into the guest, and `plan` reads no other; the plan is the same as with every field."""
        if not isinstance(user, CmsUser):
            raise TypeError(f"expected a CmsUser, not {type(user).__name__}")
        wit_event = UserEvent.of(event).value
        self._ensure_open()  # the cut follows the scope of the instance that plans
        return Plan.from_wit(self._invoke("[method]connector.plan", [self._plan_user(user), wit_event, bool(linked)]))

    def scope_fields(self) -> list[str]:
        """What `plan` reads of a user besides `active`: the CMS fields the provisioning scope reads,
        each once, and `@id` when it reads the user's id; empty without a scope. Fixed for the
        connector's lifetime. No request."""
        self._ensure_open()
        return list(self._scope_fields)

    def index_remote_users(self) -> RemoteListing:
        """Lists the remote users once (paged), so a first sync matches locally."""
        return RemoteListing.from_wit(self._ok(self._invoke("[method]connector.index-remote-users", [])))

    def export_remote_index(self) -> Optional[str]:
        """The listed remote users as a document for import_remote_index; None when nothing was listed."""
        text = self._invoke("[method]connector.export-remote-index", [])
        return None if text is None else str(text)

    def import_remote_index(self, document: str) -> int:
        """Loads another connector's listing; returns how many users it holds."""
        if not isinstance(document, str):
            raise TypeError("the document is a str")
        return int(self._ok(self._invoke("[method]connector.import-remote-index", [document])))

    def export_dialect(self) -> str:
        """What the connector learned about the server, as a JSON document to keep with the connection."""
        return str(self._invoke("[method]connector.export-dialect", []))

    def import_dialect(self, document: str) -> None:
        """Loads a document from export_dialect; a malformed one is refused with invalid-config."""
        if not isinstance(document, str):
            raise TypeError("the document is a str")
        self._ok(self._invoke("[method]connector.import-dialect", [document]))

    def remote_user_ids(self) -> list[str]:
        """The SCIM ids of the remote users index_remote_users listed (or import_remote_index loaded);
        empty when nothing was listed. No request."""
        return [str(i) for i in self._invoke("[method]connector.remote-user-ids", [])]

    def get_user(self, remote_id: str) -> Optional[dict[str, Any]]:
        """Reads one remote user by its SCIM id; None on 404."""
        if not isinstance(remote_id, str):
            raise TypeError("remote_id is a str")
        text = self._ok(self._invoke("[method]connector.get-user", [remote_id]))
        return None if text is None else json.loads(text)

    def map_user(self, user: CmsUser) -> dict[str, Any]:
        """The SCIM resource a CMS user maps to. Sends nothing."""
        mapped: dict[str, Any] = json.loads(self._ok(self._invoke("[method]connector.map-user", [self._user(user)])))
        return mapped

    # -- plumbing ------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._handle is not None:
            return
        super()._ensure_open()
        # Right after open on every fresh instance (as after a trap): `plan` needs the list on
        # each call, and it cannot change while the connector lives, so one call per instance.
        fields = [str(f) for f in self._call("[method]connector.scope-fields", [self._handle])]
        self._scope_fields = fields
        self._scope_read = frozenset(fields)

    def _plan_user(self, user: CmsUser) -> Record:
        """The WIT cms-user `plan` needs: the fields the scope reads (in the user's order), an empty
        id unless the scope reads it, `active` as is. The others are dropped before conversion, so
        they cost nothing."""
        read = self._scope_read
        return record(id=user.id if _SCOPE_ID_FIELD in read else "",
                      fields=[(k, _field_to_wit(k, v)) for k, v in user.fields.items() if k in read],
                      active=bool(user.active))

    @staticmethod
    def _user(user: CmsUser) -> Any:
        if not isinstance(user, CmsUser):
            raise TypeError(f"expected a CmsUser, not {type(user).__name__}")
        return user.to_wit()

    @staticmethod
    def _link(link: Link) -> Link:
        if not isinstance(link, Link):
            raise TypeError(f"expected a Link or None, not {type(link).__name__}")
        return link

    @staticmethod
    def _ok(result: Any) -> Any:
        # Every client result here is untagged in wasmtime-py: the err case is the only Variant.
        if isinstance(result, Variant):
            raise ProvisioningError.from_wit(result)
        return result

    def _open_args(self) -> list[Any]:
        return [self._wit_config]

    def _open_error(self, error: Any) -> Exception:
        return ProvisioningError.from_wit(error)

    def _serve_http(self, request: Any) -> Any:
        try:
            req = HttpRequest.from_wit(request)
            answer = self.transport.send(req)
            if not isinstance(answer, HttpResponse):
                raise TypeError(f"the transport returned {type(answer).__name__}, not an HttpResponse")
            return Ok(answer.to_wit())
        except TransportError as e:
            return Err(e.to_wit())
        except Exception as e:  # a transport bug must not trap the guest: it gets `other`
            self.logger.error(f"the transport failed: {type(e).__name__}: {e}")
            return Err(Variant("other", f"the host transport failed: {type(e).__name__}: {e}"))

    def _serve_directory(self, func: str, args: Sequence[Any]) -> Any:
        return Err(DirectoryError("unavailable", "a connector has no directory").to_wit())

    def close(self) -> None:
        super().close()
        close = getattr(self.transport, "close", None)
        if callable(close):
            close()
