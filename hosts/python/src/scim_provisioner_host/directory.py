"""The `directory` import on sqlite3: the store behind a Python-served SCIM server."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

from .errors import DirectoryError
from .runtime import Runtime
from .selection import Selector
from .types import CmsUser, QueryPage, ResourceKind, Search, StoredResource

__all__ = ["Directory", "SqliteDirectory"]

T = TypeVar("T")


class Directory(Protocol):
    """What the server role needs from the CMS's user store. Raise DirectoryError for
    not-found, conflict, version-mismatch, invalid-filter, unavailable or other."""

    def get(self, kind: ResourceKind, id: str) -> Optional[StoredResource]: ...

    def query(self, kind: ResourceKind, search: Search) -> QueryPage: ...

    def create(self, kind: ResourceKind, json_text: str, cms: Optional[CmsUser]) -> StoredResource: ...

    def replace(self, kind: ResourceKind, id: str, json_text: str, cms: Optional[CmsUser],
                if_version: Optional[str]) -> StoredResource: ...

    def delete(self, kind: ResourceKind, id: str) -> bool: ...


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(kind: ResourceKind) -> str:
    return "scim_users" if kind == ResourceKind.USER else "scim_groups"


def _unique_key(kind: ResourceKind, value: dict[str, Any]) -> Optional[str]:
    v = value.get("userName" if kind == ResourceKind.USER else "displayName")
    return v.lower() if isinstance(v, str) else None


def _external_id(value: dict[str, Any]) -> Optional[str]:
    v = value.get("externalId")
    return v if isinstance(v, str) else None


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise DirectoryError("other", f"the resource is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise DirectoryError("other", "the resource is not a JSON object")
    return value


def _stored(row: sqlite3.Row) -> StoredResource:
    return StoredResource(str(row["id"]), f'W/"{row["version"]}"', row["created"], row["last_modified"], row["json"])


_EQ = re.compile(r'^\s*([A-Za-z]+)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$')
# A group's member: `members[value eq "x"]` (how the component asks for a user's groups) or
# `members.value eq "x"`. ASCII, like the PHP host's pattern: no Unicode case folding of the names.
# Nothing between `members` and `[` / `.`: the component's filter parser rejects a space there,
# and a lookup the index answers by itself must be one the parser accepts.
_MEMBER_EQ = re.compile(r'^\s*members(?:\[\s*value\s+eq\s+("(?:[^"\\]|\\.)*")\s*\]'
                        r'|\.value\s+eq\s+("(?:[^"\\]|\\.)*"))\s*$', re.IGNORECASE | re.ASCII)


def _member_key(value: str) -> str:
    """A member value as the membership index keys it (``member_key``): lower-cased, so a
    lookup finds a superset of what a case-insensitive ``eq`` matches."""
    return value.lower()


class SqliteDirectory:
    """A Directory in a SQLite file, with the same tables and semantics as the PHP host's
    PdoSqliteDirectory: ``scim_users`` / ``scim_groups`` (id, version, created, last_modified,
    unique lower-cased userName / displayName, external_id, json) and, beside each SCIM user,
    a normal CMS user in ``users`` (option ``cms_table``; None for none) from the component's
    reverse mapping: ``active=false`` blocks it, DELETE removes it and its group memberships.
    ``scim_group_members`` (group_id, lower-cased member value, and ``member_value``: the first
    value of that key as stored) is the index a user's ``groups`` is found by: every read of a
    user asks for the groups whose ``members[value eq "<id>"]``, which without it loaded every
    group. A file without it, or with one lacking ``member_value``, gets it, filled from its
    groups, when opened.

    Searches: an unfiltered, unsorted page is a plain LIMIT/OFFSET; an unsorted member lookup
    whose candidates all hold the exact value asked for is paged from the index (no group
    parsed); an equality on userName/displayName, id or externalId, or on a group's member
    value, narrows the rows in SQL. Every other filter, every sort and the page are decided by
    the component's own filter engine (WIT ``selection.select``, through a ``Selector`` on an
    instance of its own, made from `runtime`), as the PHP directory does through the native
    bridge. Every write is one transaction.
    """

    def __init__(self, conn: sqlite3.Connection, runtime: Runtime, *, cms_table: Optional[str] = "users") -> None:
        if cms_table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cms_table):
            raise ValueError(f"cms_table must be a plain SQL identifier, not {cms_table!r}")
        if not isinstance(runtime, Runtime):
            raise TypeError(f"expected a Runtime (for the filter engine), not {type(runtime).__name__}")
        self.selector = Selector(runtime)
        self.cms_table = cms_table
        self.conn = conn
        conn.row_factory = sqlite3.Row
        conn.isolation_level = None  # explicit transactions below
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        for t in ("scim_users", "scim_groups"):
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {t} (
                id TEXT PRIMARY KEY, version INTEGER NOT NULL, created TEXT NOT NULL,
                last_modified TEXT NOT NULL, unique_key TEXT UNIQUE, external_id TEXT, json TEXT NOT NULL)""")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_external ON {t}(external_id)")
        self._ensure_member_index()
        if cms_table is not None:
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {cms_table} (
                id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, mail TEXT NOT NULL,
                fields TEXT NOT NULL, active INTEGER NOT NULL)""")

    @classmethod
    def open(cls, path: Union[str, Path], runtime: Runtime, *,
             cms_table: Optional[str] = "users") -> "SqliteDirectory":
        """Opens (creating if needed) a SQLite file; `runtime` runs the filter engine."""
        p = Path(path)
        if not p.parent.is_dir():
            raise ValueError(f"the directory for the database {p} does not exist")
        return cls(sqlite3.connect(str(p), check_same_thread=False), runtime, cms_table=cms_table)

    def close(self) -> None:
        self.selector.close()
        self.conn.close()

    # -- reads ---------------------------------------------------------------------

    def get(self, kind: ResourceKind, id: str) -> Optional[StoredResource]:
        row = self.conn.execute(f"SELECT id, version, created, last_modified, json FROM {_table(kind)} WHERE id = ?",
                                (id,)).fetchone()
        return None if row is None else _stored(row)

    def query(self, kind: ResourceKind, search: Search) -> QueryPage:
        table = _table(kind)
        cols = f"SELECT id, version, created, last_modified, json FROM {table}"
        if search.filter is None and search.sort_by is None:
            total = self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if search.count == 0:
                return QueryPage(total, [])
            rows = self.conn.execute(f"{cols} ORDER BY rowid LIMIT ? OFFSET ?",
                                     (min(search.count, 2 ** 62), max(1, search.start_index) - 1)).fetchall()
            return QueryPage(total, [_stored(r) for r in rows])
        member = self._member_lookup(kind, search.filter)
        if member is not None and search.sort_by is None:
            page = self._exact_member_page(member, search)
            if page is not None:
                return page
        where, arg = self._indexed_equality(kind, search.filter)
        if where is not None:
            rows = self.conn.execute(f"{cols} WHERE {where} ORDER BY rowid", (arg,)).fetchall()
            if not rows:
                return QueryPage(0, [])  # an equality the index rules out: nothing to select from
        else:
            rows = self.conn.execute(f"{cols} ORDER BY rowid").fetchall()
        stored = [_stored(r) for r in rows]
        views = []
        for s in stored:
            view = _parse(s.json)
            view["id"] = s.id
            view["meta"] = {"resourceType": "User" if kind == ResourceKind.USER else "Group", "created": s.created,
                            "lastModified": s.last_modified, "version": s.version}
            views.append(json.dumps(view, ensure_ascii=False, separators=(",", ":")))
        selection = self.selector.select(views, search)
        return QueryPage(selection.total_results, [stored[i] for i in selection.indices])

    def _exact_member_page(self, value: str, search: Search) -> Optional[QueryPage]:
        """The groups with a member whose value is `value`, paged as `search` asks, when the
        index holds that exact value for every candidate: each is then a match under any
        comparison (case-exact or not), and the rest of the groups are no match, so the page
        is cut here without parsing a group or calling ``select``. None when a candidate holds
        only a case variant, for the component's filter engine to decide."""
        # CROSS JOIN keeps the index as the outer loop: with a plain JOIN, SQLite walked every
        # group in rowid order to save the sort (4 times slower with 1,000 groups, measured in
        # the Rust host, whose query this is).
        rows = self.conn.execute(
            "SELECT r.id, r.version, r.created, r.last_modified, r.json, m.member_value IS ? AS exact "
            "FROM scim_group_members m CROSS JOIN scim_groups r ON r.id = m.group_id "
            "WHERE m.member_key = ? ORDER BY r.rowid", (value, _member_key(value))).fetchall()
        if not all(r["exact"] for r in rows):
            return None
        skip = max(1, search.start_index) - 1
        return QueryPage(len(rows), [_stored(r) for r in rows[skip:skip + max(0, search.count)]])

    @staticmethod
    def _member_lookup(kind: ResourceKind, filter: Optional[str]) -> Optional[str]:
        """The member value a group filter looks groups up by, when it is
        ``members[value eq "x"]`` or ``members.value eq "x"`` (how the component, and identity
        providers, ask for a user's groups)."""
        m = _MEMBER_EQ.match(filter) if kind == ResourceKind.GROUP and filter is not None else None
        if m is None:
            return None
        try:
            member = json.loads(m.group(1) if m.group(1) is not None else m.group(2))
        except ValueError:
            return None
        if not isinstance(member, str):
            return None
        try:
            member.encode("utf-8")
        except UnicodeEncodeError:
            return None  # a lone surrogate escape: SQLite cannot bind it, and the parser rejects it
        return member

    @staticmethod
    def _indexed_equality(kind: ResourceKind, filter: Optional[str]) -> tuple[Optional[str], Optional[str]]:
        member = SqliteDirectory._member_lookup(kind, filter)
        if member is not None:
            return "id IN (SELECT group_id FROM scim_group_members WHERE member_key = ?)", _member_key(member)
        m = _EQ.match(filter) if filter is not None else None
        if m is None:
            return None, None
        try:
            value = json.loads(m.group(2))
        except ValueError:
            return None, None
        if not isinstance(value, str):
            return None, None
        attr = m.group(1).lower()
        if attr == ("username" if kind == ResourceKind.USER else "displayname"):
            return "unique_key = ?", value.lower()
        if attr == "id":
            return "id = ?", value
        if attr == "externalid":
            return "external_id = ?", value
        return None, None

    # -- writes --------------------------------------------------------------------

    def create(self, kind: ResourceKind, json_text: str, cms: Optional[CmsUser]) -> StoredResource:
        value = _parse(json_text)

        def work() -> StoredResource:
            key = _unique_key(kind, value)
            self._conflict_check(kind, key, None)
            id_, now = str(uuid.uuid4()), _now()
            self.conn.execute(f"INSERT INTO {_table(kind)} (id, version, created, last_modified, unique_key, "
                              f"external_id, json) VALUES (?, 1, ?, ?, ?, ?, ?)",
                              (id_, now, now, key, _external_id(value), json_text))
            if kind == ResourceKind.GROUP:
                self._index_members(id_, value)
            self._mirror(id_, value, cms)
            return StoredResource(id_, 'W/"1"', now, now, json_text)

        return self._transaction(work)

    def replace(self, kind: ResourceKind, id: str, json_text: str, cms: Optional[CmsUser],
                if_version: Optional[str]) -> StoredResource:
        value = _parse(json_text)
        return self._transaction(lambda: self._do_replace(kind, id, json_text, value, cms, if_version))

    def delete(self, kind: ResourceKind, id: str) -> bool:
        def work() -> bool:
            if self.conn.execute(f"DELETE FROM {_table(kind)} WHERE id = ?", (id,)).rowcount == 0:
                return False
            if kind == ResourceKind.GROUP:
                self.conn.execute("DELETE FROM scim_group_members WHERE group_id = ?", (id,))
            if kind == ResourceKind.USER:
                if self.cms_table is not None:
                    self.conn.execute(f"DELETE FROM {self.cms_table} WHERE id = ?", (id,))
                # Drop the user from the groups it belonged to (rewriting each rewrites its
                # index rows too).
                for g in self.conn.execute("SELECT id, json FROM scim_groups WHERE id IN "
                                           "(SELECT group_id FROM scim_group_members WHERE member_key = ?)",
                                           (_member_key(id),)).fetchall():
                    try:
                        group = json.loads(g["json"])
                    except ValueError:
                        continue
                    members = group.get("members") if isinstance(group, dict) else None
                    if not isinstance(members, list):
                        continue
                    kept = [m for m in members if not (isinstance(m, dict) and m.get("value") == id)]
                    if len(kept) == len(members):
                        continue
                    group["members"] = kept
                    text = json.dumps(group, ensure_ascii=False, separators=(",", ":"))
                    self._do_replace(ResourceKind.GROUP, g["id"], text, group, None, None)
            return True

        return self._transaction(work)

    def _do_replace(self, kind: ResourceKind, id: str, json_text: str, value: dict[str, Any], cms: Optional[CmsUser],
                    if_version: Optional[str]) -> StoredResource:
        current = self.get(kind, id)
        if current is None:
            raise DirectoryError.not_found()
        if if_version is not None and if_version != current.version:
            raise DirectoryError.version_mismatch()
        key = _unique_key(kind, value)
        self._conflict_check(kind, key, id)
        self.conn.execute(f"UPDATE {_table(kind)} SET version = version + 1, last_modified = ?, unique_key = ?, "
                          f"external_id = ?, json = ? WHERE id = ?", (_now(), key, _external_id(value), json_text, id))
        if kind == ResourceKind.GROUP:
            self._index_members(id, value)
        self._mirror(id, value, cms)
        stored = self.get(kind, id)
        if stored is None:
            raise DirectoryError.not_found()
        return stored

    def _mirror(self, id: str, scim: dict[str, Any], cms: Optional[CmsUser]) -> None:
        """Keeps the CMS user beside a stored SCIM user; the CMS id is the SCIM id."""
        if cms is None or self.cms_table is None:
            return
        name: Optional[str] = None
        mail = ""
        fields: dict[str, Any] = {}
        for k, v in cms.fields.items():
            if k == "name" and isinstance(v, str):
                name = v
            elif k == "mail" and isinstance(v, str):
                mail = v
            elif v is not None:
                fields[k] = v
        if name is None and isinstance(scim.get("userName"), str):
            name = scim["userName"]
        if name is None:
            return
        if self.conn.execute(f"SELECT id FROM {self.cms_table} WHERE name = ? COLLATE NOCASE AND id <> ?",
                             (name, id)).fetchone() is not None:
            raise DirectoryError.conflict(f'a CMS user named "{name}" already exists')
        self.conn.execute(
            f"INSERT INTO {self.cms_table} (id, name, mail, fields, active) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, mail = excluded.mail, fields = excluded.fields, "
            "active = excluded.active",
            (id, name, mail, json.dumps(fields, ensure_ascii=False, separators=(",", ":")), 1 if cms.active else 0))

    def _index_members(self, group_id: str, group: dict[str, Any]) -> None:
        """Writes a group's rows of the membership index, replacing its old ones. Lower-cased, so
        the index finds a superset of what a case-insensitive ``eq`` matches; the component's
        filter engine still decides, unless every candidate's ``member_value`` (the first value
        of its key, as stored: INSERT OR IGNORE keeps it) is the value asked for."""
        self.conn.execute("DELETE FROM scim_group_members WHERE group_id = ?", (group_id,))
        members = group.get("members")
        for m in members if isinstance(members, list) else []:
            if isinstance(m, dict) and isinstance(m.get("value"), str):
                self.conn.execute("INSERT OR IGNORE INTO scim_group_members (group_id, member_key, member_value) "
                                  "VALUES (?, ?, ?)", (group_id, _member_key(m["value"]), m["value"]))

    def _ensure_member_index(self) -> None:
        """Creates the membership index when the file has none, or has one without
        ``member_value`` (a database written before it), and fills it from the groups already
        stored, in one immediate transaction: processes opening the file at once build it once."""
        current = "SELECT 1 FROM pragma_table_info('scim_group_members') WHERE name = 'member_value'"
        # A plain read first: only a file without the current index needs the write lock.
        if self.conn.execute(current).fetchone() is not None:
            return
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self.conn.execute(current).fetchone() is None:
                # An older index (no exact values) is rebuilt whole: its rows cannot say which
                # case variant each group holds.
                self.conn.execute("DROP TABLE IF EXISTS scim_group_members")
                self.conn.execute("""CREATE TABLE scim_group_members (
                    group_id TEXT NOT NULL, member_key TEXT NOT NULL, member_value TEXT,
                    PRIMARY KEY (group_id, member_key)) WITHOUT ROWID""")
                self.conn.execute("CREATE INDEX scim_group_members_key ON scim_group_members(member_key)")
                for g in self.conn.execute("SELECT id, json FROM scim_groups").fetchall():
                    try:
                        group = json.loads(g["json"])
                    except ValueError:
                        continue  # a group that is not JSON has no members to index
                    if isinstance(group, dict):
                        self._index_members(str(g["id"]), group)
            if own:
                self.conn.execute("COMMIT")
        except BaseException:
            if own:
                self.conn.execute("ROLLBACK")
            raise

    def _conflict_check(self, kind: ResourceKind, key: Optional[str], except_id: Optional[str]) -> None:
        if key is None:
            return
        row = self.conn.execute(f"SELECT id FROM {_table(kind)} WHERE unique_key = ?", (key,)).fetchone()
        if row is not None and row["id"] != except_id:
            attr = "userName" if kind == ResourceKind.USER else "displayName"
            raise DirectoryError.conflict(f'{attr} "{key}" is already taken')

    def _transaction(self, work: Callable[[], T]) -> T:
        if self.conn.in_transaction:
            return work()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self.conn.execute("COMMIT")
            return result
        except sqlite3.IntegrityError as e:
            self.conn.execute("ROLLBACK")
            raise DirectoryError.conflict(f"a unique value is already taken ({e})") from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def cms_user(self, id: str) -> Optional[dict[str, Any]]:
        """The CMS user kept beside SCIM user `id` (name, mail, fields, active), if any."""
        if self.cms_table is None:
            return None
        row = self.conn.execute(f"SELECT id, name, mail, fields, active FROM {self.cms_table} WHERE id = ?",
                                (id,)).fetchone()
        if row is None:
            return None
        return {"id": row["id"], "name": row["name"], "mail": row["mail"], "fields": json.loads(row["fields"]),
                "active": bool(row["active"])}
