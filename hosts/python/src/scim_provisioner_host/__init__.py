"""scim_provisioner_host: runs the scim-provisioner WebAssembly component under wasmtime-py.

Client role: ``Connector.open(runtime, config, transport=None, logger=None)``.
Server role: ``ScimServer.open(runtime, config, directory)`` and ``handle(Request) -> Response``.
"""

import logging as _logging

from .config import ConnectorConfig, ServerConfig
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

# A library's logger: silent unless the application configures logging (no global change).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "Runtime", "Connector", "ConnectorConfig", "ScimServer", "ServerConfig", "serve", "wsgi_app", "ServedHttp",
    "Transport", "HttpTransport", "Directory", "SqliteDirectory", "Selector",
    "ScimHostError", "ProvisioningError", "GuestTrap", "DeadlineExceeded", "MemoryLimitExceeded", "TransportError",
    "DirectoryError", "HostSetupError",
    "Action", "BatchItem", "BatchOutcome", "BulkLimits", "CmsUser", "HttpRequest", "HttpResponse", "Link", "Plan",
    "PlannedAction", "ProvisionOutcome", "QueryPage", "RemoteListing", "Request", "ResourceKind", "Response",
    "Search", "Selection", "ServerCapabilities", "StoredResource", "UserEvent",
]
