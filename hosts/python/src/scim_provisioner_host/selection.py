"""The component's own filter engine (WIT `selection.select`) on an instance of its own, for
directories that cannot run a SCIM filter or sort themselves (SqliteDirectory beyond its SQL
fast paths)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Mapping, Optional, Sequence, Union

from wasmtime.component import Variant

from ._codec import Err
from ._session import RedactingLogger, Session
from .errors import DirectoryError
from .runtime import SELECTION, Runtime
from .types import Search, Selection

__all__ = ["Selector"]


class Selector(Session):
    """Filters, sorts and pages resources with the component's own code, so a Python
    directory never disagrees with the guest on what a filter, a sort or a page means.

    It runs on a dedicated instance: the server's instance is in the middle of its
    ``handle`` call while it asks the directory (a component instance is not re-entrant),
    and ``select`` imports nothing. One call at a time (a lock); after a trap the next call
    gets a fresh instance, as every session does.
    """

    _interface = SELECTION

    def __init__(self, runtime: Runtime, logger: Optional[logging.Logger] = None) -> None:
        super().__init__(runtime, RedactingLogger(logger))
        self._lock = threading.Lock()

    def select(self, resources: Sequence[Union[str, Mapping[str, Any]]], search: Search) -> Selection:
        """Which of `resources` `search` selects. Each resource is the SCIM JSON a client would
        see (with ``id`` and ``meta``), as text or as a mapping. Raises DirectoryError:
        ``invalid-filter`` for a filter that does not parse, ``other`` for a resource that is
        not JSON or a bad ``sort_by``; GuestTrap if the guest trapped."""
        if not isinstance(search, Search):
            raise TypeError(f"expected a Search, not {type(search).__name__}")
        texts = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False, separators=(",", ":"))
                 for r in resources]
        with self._lock:
            if self._instance is None:
                self._instantiate()
            result = self._call("select", [texts, search.to_wit()])
        if isinstance(result, Variant):  # result<selection, directory-error> is untagged
            raise DirectoryError.from_wit(result)
        selection = Selection.from_wit(result)
        if any(not 0 <= i < len(texts) for i in selection.indices):
            raise DirectoryError("other", "the filter engine returned an index out of range")
        return selection

    def _serve_http(self, request: Any) -> Any:
        return Err(Variant("denied", "the filter engine sends no HTTP requests"))

    def _serve_directory(self, func: str, args: Sequence[Any]) -> Any:
        return Err(Variant("unavailable", "the filter engine has no directory"))

    def __repr__(self) -> str:
        return "Selector()"
