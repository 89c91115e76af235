"""The configuration mappings ``Connector.open`` and ``ScimServer.open`` take, as TypedDicts
(the same keys as the PHP host's arrays and host-example's TOML). Plain dicts work too: the
keys are checked when a connector or server opens, so unknown keys fail with a clear error."""

from __future__ import annotations

from typing import Any, Mapping, Required, TypedDict, Union




class ConnectorConfig(TypedDict, total=False):
    """The client role's configuration. One of ``token``/``token_env`` (bearer) or ``username``
    with ``password``/``password_env`` (basic), or neither (no authentication); or ``auth`` =
    ``"oauth2"`` with ``token_url``, ``client_id``, ``client_secret``/``client_secret_env`` and
    optionally ``scope``, ``audience``, ``resource``, ``client_auth`` (OAuth 2.0 client
    credentials: the component gets the token; the secret goes only to ``token_url``)."""

    base_url: Required[str]
    token: str
    token_env: str
    username: str
    password: str
    password_env: str
    auth: str  # "oauth2"; left out, the keys above decide
    token_url: str
    client_id: str
    client_secret: str
    client_secret_env: str
    scope: str
    audience: str
    resource: str
    client_auth: str  # "client_secret_basic" (default) or "client_secret_post"
    timeout: int  # ms per request (default 30000)
    policy: Union[Mapping[str, Any], str]  # the provisioning policy, a mapping or JSON text


class ServerConfig(TypedDict, total=False):
    """The server role's configuration: the token SCIM clients present, and the limits."""

    base_url: Required[str]
    token: str
    token_env: str
    max_results: int
    bulk_max_operations: int
    bulk_max_payload: int
    policy: Union[Mapping[str, Any], str]  # its mapping, reversed, turns SCIM users into CMS users
