"""Exceptions of the Python host: what the component reports, what the host refuses, and guest traps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from wasmtime.component import Variant

__all__ = [
    "ScimHostError",
    "ProvisioningError",
    "GuestTrap",
    "DeadlineExceeded",
    "MemoryLimitExceeded",
    "TransportError",
    "DirectoryError",
    "HostSetupError",
]

TRANSPORT_CASES = ("denied", "invalid-url", "cannot-connect", "tls", "timeout", "other")
DIRECTORY_CASES = ("not-found", "conflict", "version-mismatch", "invalid-filter", "unavailable", "other")
PROVISIONING_CASES = ("invalid-config", "missing-attribute", "transport", "scim", "unexpected-response", "other")
RETRY_CLASSES = ("permanent", "backoff", "after-seconds")


class ScimHostError(Exception):
    """Base class of every exception this package raises."""


class HostSetupError(ScimHostError):
    """The host cannot run: a file is missing, the component does not load, a bad argument."""


def _retry_of(value: Any) -> tuple[str, Optional[int]]:
    if isinstance(value, Variant):
        payload: Any = value.payload
        return value.tag, (int(payload) if value.tag == "after-seconds" else None)
    return "permanent", None


def _retry_note(retry: str, after: Optional[int]) -> str:
    if retry == "backoff":
        return " (retryable)"
    if retry == "after-seconds":
        return f" (retry after {after} s)"
    return ""


class ProvisioningError(ScimHostError):
    """WIT `provisioning-error`: why a client-role call failed (or an invalid configuration).

    Attributes: ``case`` (``invalid-config``, ``missing-attribute``, ``transport``, ``scim``,
    ``unexpected-response``, ``other``), ``status``, ``scim_type``, ``detail``, ``retry``
    (``permanent``, ``backoff``, ``after-seconds``), ``retry_after_seconds``,
    ``transport_error`` (the transport-error case), ``user_id`` and ``attribute``.
    """

    def __init__(
        self,
        case: str,
        message: str,
        *,
        status: Optional[int] = None,
        scim_type: Optional[str] = None,
        detail: Optional[str] = None,
        retry: str = "permanent",
        retry_after_seconds: Optional[int] = None,
        transport_error: Optional[str] = None,
        user_id: Optional[str] = None,
        attribute: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.case = case
        self.message = message
        self.status = status
        self.scim_type = scim_type
        self.detail = detail
        self.retry = retry
        self.retry_after_seconds = retry_after_seconds
        self.transport_error = transport_error
        self.user_id = user_id
        self.attribute = attribute

    @property
    def retryable(self) -> bool:
        return self.retry != "permanent"

    @classmethod
    def invalid_config(cls, message: str) -> "ProvisioningError":
        return cls("invalid-config", "invalid configuration: " + message, detail=message)

    @classmethod
    def from_wit(cls, wit: Any) -> "ProvisioningError":
        if not isinstance(wit, Variant):
            return cls("other", f"the component returned a malformed error: {wit!r}")
        tag: str = wit.tag
        val: Any = wit.payload
        if tag == "invalid-config":
            return cls(tag, f"invalid configuration: {val}", detail=str(val))
        if tag == "missing-attribute":
            uid, attr = str(getattr(val, "user-id")), str(val.attribute)
            return cls(tag, f"user {uid}: required attribute {attr} has no value; nothing was sent",
                       user_id=uid, attribute=attr)
        if tag == "transport":
            err = val.error
            retry, after = _retry_of(val.retry)
            case = err.tag if isinstance(err, Variant) else "other"
            m = str(err.payload) if isinstance(err, Variant) and err.payload is not None else ""
            text = {
                "denied": f"request refused by the host: {m}",
                "invalid-url": f"invalid URL: {m}",
                "cannot-connect": f"cannot connect to the SCIM server ({m}); check the base URL and that the server is running",
                "tls": f"TLS failure ({m}); check the server's certificate",
                "timeout": "the SCIM server did not answer in time",
            }.get(case, f"transport failure: {m}")
            return cls(tag, text + _retry_note(retry, after), retry=retry, retry_after_seconds=after,
                       transport_error=case, detail=m or None)
        if tag == "scim":
            status = int(val.status)
            scim_type = getattr(val, "scim-type")
            detail = val.detail
            retry, after = _retry_of(val.retry)
            text = {
                401: "authentication rejected (HTTP 401): check the bearer token",
                403: "access forbidden (HTTP 403): the token lacks permission",
                404: "not found (HTTP 404): check the SCIM base URL",
            }.get(status, f"the SCIM server answered HTTP {status}")
            if scim_type is not None:
                text += f", scimType {scim_type}"
            if detail is not None:
                text += f": {detail}"
            return cls(tag, text + _retry_note(retry, after), status=status, scim_type=scim_type, detail=detail,
                       retry=retry, retry_after_seconds=after)
        if tag == "unexpected-response":
            status = int(val.status)
            reason = str(val.reason)
            retry, after = _retry_of(val.retry)
            hint = {401: " (authentication rejected: check the bearer token)",
                    403: " (forbidden: the token lacks permission)",
                    404: " (check the SCIM base URL)"}.get(status, "")
            return cls(tag, f"not a SCIM answer (HTTP {status}){hint}: {reason}" + _retry_note(retry, after),
                       status=status, detail=reason, retry=retry, retry_after_seconds=after)
        return cls("other", str(val), detail=str(val))

    def __repr__(self) -> str:
        return f"ProvisioningError(case={self.case!r}, status={self.status!r}, retry={self.retry!r}, message={self.message!r})"


class GuestTrap(ScimHostError):
    """The guest trapped (``kind``: ``trap``, ``deadline`` or ``memory``) in ``export``.

    The instance is discarded; the next call on the same object opens a fresh instance with the
    stored configuration and works.
    """

    kind = "trap"

    def __init__(self, export: str, message: str) -> None:
        super().__init__(f"the component trapped in {export} ({self.kind}): {message}")
        self.export = export
        self.detail = message


class DeadlineExceeded(GuestTrap):
    kind = "deadline"


class MemoryLimitExceeded(GuestTrap):
    kind = "memory"


class TransportError(ScimHostError):
    """Raised by a transport: WIT `transport-error` (``case`` is one of TRANSPORT_CASES)."""

    def __init__(self, case: str, message: str = "") -> None:
        if case not in TRANSPORT_CASES:
            raise ValueError(f"unknown transport-error case {case!r}; known: {', '.join(TRANSPORT_CASES)}")
        super().__init__(f"{case}: {message}" if message else case)
        self.case = case
        self.message = message

    def to_wit(self) -> Variant:
        return Variant("timeout") if self.case == "timeout" else Variant(self.case, self.message)


class DirectoryError(ScimHostError):
    """Raised by a directory: WIT `directory-error` (``case`` is one of DIRECTORY_CASES)."""

    def __init__(self, case: str, message: str = "") -> None:
        if case not in DIRECTORY_CASES:
            raise ValueError(f"unknown directory-error case {case!r}; known: {', '.join(DIRECTORY_CASES)}")
        super().__init__(f"{case}: {message}" if message else case)
        self.case = case
        self.message = message

    @classmethod
    def not_found(cls) -> "DirectoryError":
        return cls("not-found")

    @classmethod
    def conflict(cls, message: str) -> "DirectoryError":
        return cls("conflict", message)

    @classmethod
    def version_mismatch(cls) -> "DirectoryError":
        return cls("version-mismatch")

    @classmethod
    def from_wit(cls, v: Any) -> "DirectoryError":
        """From a WIT `directory-error` value (a ``Variant``)."""
        tag = str(getattr(v, "tag", "other"))
        payload = getattr(v, "payload", None)
        return cls(tag if tag in DIRECTORY_CASES else "other", "" if payload is None else str(payload))

    def to_wit(self) -> Variant:
        if self.case in ("not-found", "version-mismatch"):
            return Variant(self.case)
        return Variant(self.case, self.message)
