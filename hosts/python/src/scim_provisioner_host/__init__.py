"""scim_provisioner_host: runs the scim-provisioner WebAssembly component under wasmtime-py.

Client role: ``Connector.open(runtime, config, transport=None, logger=None)``.
Server role: ``ScimServer.open(runtime, config, directory)`` and ``handle(Request) -> Response``.
"""

from .connector import Connector
from .directory import Directory, SqliteDirectory
from .errors import (DeadlineExceeded, DirectoryError, GuestTrap, HostSetupError, MemoryLimitExceeded,
                     ProvisioningError, ScimHostError, TransportError)
from .runtime import Runtime
from .selection import Selector
from .server import ScimServer, ServedHttp, serve, wsgi_app
from .transport import HttpTransport, Transport
from .types import (Action, BatchItem, BatchOutcome, BulkLimits, CmsUser, HttpRequest, HttpResponse, Link, Plan,
                    PlannedAction, ProvisionOutcome, QueryPage, RemoteListing, Request, ResourceKind, Response, Search,
                    Selection, ServerCapabilities, StoredResource, UserEvent)

__all__ = [
    "Runtime", "Connector", "ScimServer", "serve", "wsgi_app", "ServedHttp",
    "Transport", "HttpTransport", "Directory", "SqliteDirectory", "Selector",
    "ScimHostError", "ProvisioningError", "GuestTrap", "DeadlineExceeded", "MemoryLimitExceeded", "TransportError",
    "DirectoryError", "HostSetupError",
    "Action", "BatchItem", "BatchOutcome", "BulkLimits", "CmsUser", "HttpRequest", "HttpResponse", "Link", "Plan",
    "PlannedAction", "ProvisionOutcome", "QueryPage", "RemoteListing", "Request", "ResourceKind", "Response",
    "Search", "Selection", "ServerCapabilities", "StoredResource", "UserEvent",
]
