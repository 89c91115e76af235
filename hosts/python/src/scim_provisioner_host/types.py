"""The WIT records as dataclasses, with their conversions to and from wasmtime-py values.

wasmtime-py represents a record as a ``Record`` whose attributes carry the WIT (kebab-case)
names, an enum as its case name, and a variant either as ``Variant(tag, payload)`` (when two
cases share a Python class) or *untagged*, as the bare payload (when every case has its own
class). The conversions below know which WIT type is which; see the README.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from wasmtime.component import Record, Variant

from .errors import ProvisioningError

FieldValue = Union[str, int, float, bool, list[str], None]


def record(**fields: Any) -> Record:
    """A wasmtime-py Record; ``base_url=`` becomes the WIT field ``base-url``."""
    r = Record()
    for k, v in fields.items():
        setattr(r, k.replace("_", "-"), v)
    return r


def _get(r: Any, name: str) -> Any:
    return getattr(r, name)


class UserEvent(str, enum.Enum):
    """WIT `user-event`."""

    CREATED = "created"
    UPDATED = "updated"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    DELETED = "deleted"
    RECONCILE = "reconcile"

    @classmethod
    def of(cls, value: "UserEvent | str") -> "UserEvent":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown user event {value!r}; known: {', '.join(e.value for e in cls)}") from None


class Action(str, enum.Enum):
    """WIT `action`: what a provisioning call did."""

    CREATED = "created"
    ADOPTED = "adopted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    UNLINKED = "unlinked"
    SKIPPED = "skipped"


class PlannedAction(str, enum.Enum):
    """WIT `planned-action`."""

    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    DELETE = "delete"
    SKIP = "skip"


class ResourceKind(str, enum.Enum):
    """WIT `directory.resource-kind`."""

    USER = "user"
    GROUP = "group"


def _field_to_wit(name: str, value: Any) -> Any:
    # field-value is an untagged variant in wasmtime-py: str | float | bool | list | None.
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"field {name}: a number must be finite")
        return f  # an int would match no case of the untagged variant
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, bool):
                out.append("true" if v else "false")
            elif isinstance(v, (str, int, float)):
                out.append(str(v))
            else:
                raise ValueError(f"field {name}: a list holds strings only, not {type(v).__name__}")
        return out
    raise ValueError(
        f"field {name}: a CMS field is a string, number, bool, list of strings or None, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class CmsUser:
    """WIT `cms-user`: the CMS's id, named fields and whether the user is active."""

    id: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise ValueError(f"a CMS user id is a string, not {type(self.id).__name__}")
        for k, v in self.fields.items():
            if not isinstance(k, str):
                raise ValueError(f"field names are strings, not {type(k).__name__}")
            _field_to_wit(k, v)

    def to_wit(self) -> Record:
        return record(id=self.id, fields=[(k, _field_to_wit(k, v)) for k, v in self.fields.items()],
                      active=bool(self.active))

    @classmethod
    def from_wit(cls, r: Any) -> "CmsUser":
        fields: dict[str, FieldValue] = {}
        for name, value in r.fields:
            fields[name] = list(value) if isinstance(value, list) else value
        return cls(r.id, fields, bool(r.active))


@dataclass(frozen=True)
class Link:
    """WIT `link`: what the host stores about a provisioned user between calls."""

    remote_id: str
    version: Optional[str] = None
    snapshot: Optional[str] = None

    def to_wit(self) -> Record:
        return record(remote_id=self.remote_id, version=self.version, snapshot=self.snapshot)

    @classmethod
    def from_wit(cls, r: Any) -> "Link":
        return cls(_get(r, "remote-id"), r.version, r.snapshot)

    def to_json(self) -> str:
        return json.dumps({"remote_id": self.remote_id, "version": self.version, "snapshot": self.snapshot})

    @classmethod
    def from_json(cls, text: str) -> "Link":
        d = json.loads(text)
        return cls(d["remote_id"], d.get("version"), d.get("snapshot"))


@dataclass(frozen=True)
class ProvisionOutcome:
    """WIT `provision-outcome`."""

    action: Action
    reason: Optional[str]
    link: Optional[Link]
    location: Optional[str]
    requests: int

    @classmethod
    def from_wit(cls, r: Any) -> "ProvisionOutcome":
        return cls(Action(r.action), r.reason, None if r.link is None else Link.from_wit(r.link), r.location,
                   int(r.requests))


@dataclass(frozen=True)
class Plan:
    """WIT `plan`."""

    action: PlannedAction
    reason: Optional[str] = None

    @classmethod
    def from_wit(cls, r: Any) -> "Plan":
        return cls(PlannedAction(r.action), r.reason)


@dataclass(frozen=True)
class BulkLimits:
    max_operations: int
    max_payload_size: int


@dataclass(frozen=True)
class ServerCapabilities:
    """WIT `server-capabilities`."""

    discovered: bool
    patch: bool
    bulk: Optional[BulkLimits]
    filter_max_results: Optional[int]
    etag: bool
    sort: bool
    change_password: bool

    @classmethod
    def from_wit(cls, r: Any) -> "ServerCapabilities":
        b = r.bulk
        return cls(bool(r.discovered), bool(r.patch),
                   None if b is None else BulkLimits(int(_get(b, "max-operations")), int(_get(b, "max-payload-size"))),
                   _get(r, "filter-max-results"), bool(r.etag), bool(r.sort), bool(_get(r, "change-password")))


@dataclass(frozen=True)
class BatchItem:
    """WIT `batch-item`."""

    user: CmsUser
    event: Union[UserEvent, str]
    link: Optional[Link] = None

    def to_wit(self) -> Record:
        return record(user=self.user.to_wit(), event=UserEvent.of(self.event).value,
                      link=None if self.link is None else self.link.to_wit())


@dataclass(frozen=True)
class BatchOutcome:
    """WIT `batch-outcome`: one ProvisionOutcome or ProvisioningError per item, in order."""

    results: list[Union[ProvisionOutcome, ProvisioningError]]
    requests: int
    bulk_requests: int

    @classmethod
    def from_wit(cls, r: Any) -> "BatchOutcome":
        results: list[Union[ProvisionOutcome, ProvisioningError]] = []
        for item in r.results:
            # result<provision-outcome, provisioning-error> is untagged: Record or Variant.
            results.append(ProvisioningError.from_wit(item) if isinstance(item, Variant)
                           else ProvisionOutcome.from_wit(item))
        return cls(results, int(r.requests), int(_get(r, "bulk-requests")))


@dataclass(frozen=True)
class RemoteListing:
    users: int
    requests: int

    @classmethod
    def from_wit(cls, r: Any) -> "RemoteListing":
        return cls(int(r.users), int(r.requests))


@dataclass(frozen=True)
class HttpRequest:
    """WIT `http-request`, as the transport receives it."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Optional[bytes]
    timeout_ms: int

    @classmethod
    def from_wit(cls, r: Any) -> "HttpRequest":
        m = r.method
        method = (str(m.payload) if m.tag == "other" else m.tag.upper()) if isinstance(m, Variant) else str(m)
        return cls(method, r.url, [(str(a), str(b)) for a, b in r.headers], r.body, int(_get(r, "timeout-ms")))


@dataclass(frozen=True)
class HttpResponse:
    """WIT `http-response`."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def to_wit(self) -> Record:
        if not 0 <= self.status <= 0xFFFF:
            raise ValueError(f"HTTP status {self.status} is out of range")
        return record(status=self.status, headers=[(str(a), str(b)) for a, b in self.headers], body=bytes(self.body))


@dataclass(frozen=True)
class StoredResource:
    """WIT `stored-resource`."""

    id: str
    version: str
    created: str
    last_modified: str
    json: str

    def to_wit(self) -> Record:
        return record(id=self.id, version=self.version, created=self.created, last_modified=self.last_modified,
                      json=self.json)


@dataclass(frozen=True)
class Search:
    """WIT `search`."""

    filter: Optional[str]
    start_index: int = 1
    count: int = 0xFFFFFFFF
    sort_by: Optional[str] = None
    sort_descending: bool = False

    @classmethod
    def from_wit(cls, r: Any) -> "Search":
        return cls(r.filter, int(_get(r, "start-index")), int(r.count), _get(r, "sort-by"),
                   bool(_get(r, "sort-descending")))

    def to_wit(self) -> Record:
        return record(filter=self.filter, start_index=min(max(0, int(self.start_index)), 0xFFFFFFFF),
                      count=min(max(0, int(self.count)), 0xFFFFFFFF), sort_by=self.sort_by,
                      sort_descending=bool(self.sort_descending))


@dataclass(frozen=True)
class Selection:
    """WIT `selection.selection`: how many resources match in all, and the requested page as
    indices into the resources given, in the order to return them."""

    total_results: int
    indices: Sequence[int]

    @classmethod
    def from_wit(cls, r: Any) -> "Selection":
        return cls(int(_get(r, "total-results")), [int(i) for i in r.indices])


@dataclass(frozen=True)
class QueryPage:
    """WIT `query-page`."""

    total_results: int
    resources: Sequence[StoredResource]

    def to_wit(self) -> Record:
        return record(total_results=int(self.total_results), resources=[r.to_wit() for r in self.resources])


@dataclass(frozen=True)
class Request:
    """WIT `server-request`: one HTTP request relative to the SCIM base URL."""

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""

    def to_wit(self) -> Record:
        return record(method=self.method, path=self.path, query=self.query,
                      headers=[(str(a), str(b)) for a, b in self.headers], body=bytes(self.body))


@dataclass(frozen=True)
class Response:
    """WIT `server-response`."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def from_wit(cls, r: Any) -> "Response":
        return cls(int(r.status), [(a, b) for a, b in r.headers], bytes(r.body))

    def header(self, name: str) -> Optional[str]:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @classmethod
    def error(cls, status: int, detail: str) -> "Response":
        body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status),
                           "detail": detail}).encode()
        return cls(status, [("Content-Type", "application/scim+json")], body)
