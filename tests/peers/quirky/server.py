#!/usr/bin/env python3
"""A small SCIM 2.0 server (Users only) for the end-to-end tests, with switches that each
reproduce one behaviour of SCIM servers people actually run. Standard library only:
wsgiref for HTTP, sqlite3 for storage, so its data survives a kill and a restart.

Base path /v2. Discovery endpoints answer without the token (RFC 7644 section 4); /Users
needs `Authorization: Bearer <token>`.

Switches (each exactly the behaviour described in issue 16):
  --narrow-schema     /Schemas declares fewer sub-attributes than RFC 7643 (emails: only
                      value; no enterprise extension); anything undeclared in a POST, PUT or
                      PATCH body is a 400 "Extra inputs are not permitted: emails, 0, primary"
  --require-name      the schema marks name.formatted and name.familyName required; a
                      create or replace without them is a 400 naming the attribute
  --patch-501         PATCH is advertised, but a PATCH whose path has a sub-attribute or a
                      value filter (name.familyName, emails[type eq "work"].value) is
                      refused, as is a path-less operation; `active` and other simple paths work
  --patch-refusal R   how --patch-501 refuses: 501 (default), noTarget, invalidPath, 405
  --no-filter         ServiceProviderConfig says filter.supported=false, and filters are
                      ignored (--filter-mode ignore: the list is returned unfiltered) or
                      refused (--filter-mode reject: 400)
  --no-scim-type-409  the 409 for an existing userName carries no scimType
  --no-unique         a second user with an existing userName is accepted
  --uniqueness-400    the refusal of an existing userName is a 400 scimType "uniqueness"
                      (RFC 7644 Table 9 lists it under 400; section 3.3 asks for 409)
  --paging-500        a list request carrying count or startIndex is a 500; GET /Users
                      without them answers --default-page users (0: all of them)
  --post-delay-ms N   a POST /Users commits, then waits N ms before it answers
  --cycling-pages     pages by 10 (filter.maxResults); an unfiltered list claims 1,000,000
                      users (totalResults) and, past the users it has, starts again from
                      the first: it serves its pages for ever, never the same one twice in a
                      row (issue 12: a server that lies about totalResults)
  --mutability-schema /Schemas declares externalId readOnly and userName immutable (issue
                      29); a PUT or PATCH that changes userName is a 400 "mutability"
  --post-drops-read-only
                      a POST or PUT silently drops the read-only attributes (externalId
                      under --mutability-schema) and stores the rest
  --patch-refuses-read-only
                      a PATCH that touches a read-only attribute is a 400 "mutability:
                      'externalId' is read-only"
  --hidden-user NAME  a row that holds userName NAME but is never listed nor found by id
                      (a half-written row a crash left): a POST of NAME is a 409 unless
                      --no-unique; repeatable
  --introspect-url URL, --introspect-client ID:SECRET
                      accept only access tokens that this OAuth 2.0 introspection endpoint
                      (RFC 7662) calls active, asking as that client (issue 31); --token is
                      then not needed
  --rate-limit N      a token bucket of N requests a second (a burst of N): past it, every
                      request is a 429 with Retry-After (whole seconds until a token, at least 1)
  --max-members-per-patch N
                      a PATCH of a group that adds or removes more than N members in all is a
                      400 "tooMany" (Groups are kept in memory, not in --db)
  --db FILE           the SQLite file (default: in memory)
"""

import argparse
import json
import re
import sqlite3
import sys
import threading
import time
import uuid
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"


def attr(name, type_="string", sub=None, multi=False, required=False):
    a = {
        "name": name,
        "type": "complex" if sub is not None else type_,
        "multiValued": multi,
        "required": required,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "server" if name == "userName" else "none",
        "caseExact": False,
    }
    if sub is not None:
        a["subAttributes"] = sub
    return a


def multi_complex(name, subs):
    return attr(name, sub=[attr(s, "boolean" if s == "primary" else "string") for s in subs], multi=True)


def core_schema(narrow, require_name, mutability=False):
    name_subs = ["formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix"]
    if narrow:
        name_subs = ["formatted", "familyName", "givenName"]
    name = attr(
        "name",
        sub=[attr(s, required=require_name and s in ("formatted", "familyName")) for s in name_subs],
        required=require_name,
    )
    attrs = [attr("userName", required=True), name, attr("displayName"), attr("active", "boolean")]
    if mutability:
        attrs[0]["mutability"] = "immutable"
        external_id = attr("externalId")
        external_id["mutability"] = "readOnly"
        attrs.append(external_id)
    if narrow:
        attrs.append(multi_complex("emails", ["value"]))
    else:
        for simple in ("nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale", "timezone", "password"):
            attrs.append(attr(simple))
        for m in ("emails", "phoneNumbers", "ims", "photos"):
            attrs.append(multi_complex(m, ["value", "display", "type", "primary"]))
        attrs.append(multi_complex("addresses", ["formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary"]))
        for m in ("groups", "entitlements", "roles", "x509Certificates"):
            attrs.append(multi_complex(m, ["value", "display", "type", "primary"]))
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": CORE,
        "name": "User",
        "description": "User Account",
        "attributes": attrs,
        "meta": {"resourceType": "Schema", "location": "/v2/Schemas/" + CORE},
    }


def enterprise_schema():
    manager = attr("manager", sub=[attr("value"), attr("$ref", "reference"), attr("displayName")])
    subs = [attr(s) for s in ("employeeNumber", "costCenter", "organization", "division", "department")]
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ENTERPRISE,
        "name": "EnterpriseUser",
        "attributes": subs + [manager],
        "meta": {"resourceType": "Schema", "location": "/v2/Schemas/" + ENTERPRISE},
    }


class Refusal(Exception):
    def __init__(self, status, detail, scim_type=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def find_ci(obj, key):
    for k in obj:
        if k.lower() == key.lower():
            return k
    return None


class Store:
    """Users as JSON in SQLite; one lock for every access, the server is small."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS users (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
            "user_name TEXT NOT NULL, version INTEGER NOT NULL, created TEXT NOT NULL, data TEXT NOT NULL)"
        )

    def all(self):
        rows = self.db.execute("SELECT id, version, created, data FROM users ORDER BY seq").fetchall()
        return [self.resource(*r) for r in rows]

    def get(self, uid):
        row = self.db.execute("SELECT id, version, created, data FROM users WHERE id = ?", (uid,)).fetchone()
        return self.resource(*row) if row else None

    def by_user_name(self, user_name, other_than=None):
        rows = self.db.execute(
            "SELECT id FROM users WHERE lower(user_name) = lower(?) AND id != ?", (user_name, other_than or "")
        ).fetchall()
        return [r[0] for r in rows]

    def insert(self, data):
        uid = uuid.uuid4().hex
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.db.execute(
            "INSERT INTO users (id, user_name, version, created, data) VALUES (?, ?, 1, ?, ?)",
            (uid, data.get("userName", ""), now, json.dumps(data)),
        )
        return self.get(uid)

    def replace(self, uid, data):
        self.db.execute(
            "UPDATE users SET user_name = ?, version = version + 1, data = ? WHERE id = ?",
            (data.get("userName", ""), json.dumps(data), uid),
        )
        return self.get(uid)

    def delete(self, uid):
        return self.db.execute("DELETE FROM users WHERE id = ?", (uid,)).rowcount > 0

    @staticmethod
    def resource(uid, version, created, data):
        r = json.loads(data)
        r["id"] = uid
        r["meta"] = {
            "resourceType": "User",
            "created": created,
            "lastModified": created,
            "version": 'W/"%d"' % version,
            "location": "/v2/Users/" + uid,
        }
        return r


class Groups:
    """/Groups, compactly, in memory: create, list by `displayName eq`, read, PATCH members
    (add a list; remove `members[value eq "a" or value eq "b"]`, or `members` with a value
    list), PUT, DELETE; `excludedAttributes=members` honoured."""

    GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

    def __init__(self, max_members_per_patch):
        self.max = max_members_per_patch
        self.groups = {}  # id -> (displayName, {member id: None}, version)
        self.lock = threading.Lock()

    def render(self, gid, query):
        name, members, version = self.groups[gid]
        g = {"schemas": [self.GROUP], "id": gid, "displayName": name,
             "meta": {"resourceType": "Group", "version": 'W/"%d"' % version, "location": "/v2/Groups/" + gid}}
        wanted = [a.strip().lower() for a in query.get("attributes", "").split(",") if a.strip()]
        excluded = [a.strip().lower() for a in query.get("excludedAttributes", "").split(",")]
        if "members" not in excluded and (not wanted or "members" in wanted):
            g["members"] = [{"value": m} for m in members]
        return g

    def handle(self, method, path, query, body):
        with self.lock:
            if path == "/v2/Groups":
                if method == "GET":
                    found = list(self.groups)
                    if "filter" in query:
                        m = re.fullmatch(r'\s*displayName\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', query["filter"], re.I)
                        if not m:
                            raise Refusal(400, "unsupported filter", "invalidFilter")
                        name = json.loads('"%s"' % m.group(1)).lower()
                        found = [g for g in found if self.groups[g][0].lower() == name]
                    return 200, listing([self.render(g, query) for g in found])
                if method == "POST":
                    data = json_object(body)
                    name = data.get("displayName")
                    if not isinstance(name, str) or not name:
                        raise Refusal(400, "displayName is required", "invalidValue")
                    if any(g[0].lower() == name.lower() for g in self.groups.values()):
                        raise Refusal(409, "group %s exists" % name, "uniqueness")
                    gid = uuid.uuid4().hex
                    self.groups[gid] = (name, {m["value"]: None for m in data.get("members") or []}, 1)
                    return 201, self.render(gid, query)
                return 405, error(405, "method not allowed")
            m = re.fullmatch(r"/v2/Groups/([^/]+)", path)
            if not m or m.group(1) not in self.groups:
                return 404, error(404, "Group not found")
            gid = m.group(1)
            name, members, version = self.groups[gid]
            if method == "GET":
                return 200, self.render(gid, query)
            if method == "DELETE":
                del self.groups[gid]
                return 204, None
            if method == "PUT":
                data = json_object(body)
                members = {x["value"]: None for x in data.get("members") or []}
                self.groups[gid] = (data.get("displayName") or name, members, version + 1)
                return 200, self.render(gid, query)
            if method != "PATCH":
                return 405, error(405, "method not allowed")
            ops = json_object(body).get("Operations")
            if not isinstance(ops, list):
                raise Refusal(400, "PATCH needs Operations", "invalidSyntax")
            members, changed = dict(members), 0
            for op in ops:
                kind, path_, value = str(op.get("op", "")).lower(), op.get("path") or "", op.get("value")
                values = [v["value"] for v in value if isinstance(v, dict)] if isinstance(value, list) else []
                filtered = re.fullmatch(r"members\[(.*)\]", path_, re.S)
                if filtered:
                    values = re.findall(r'value\s+eq\s+"([^"]*)"', filtered.group(1))
                elif path_.lower() != "members":
                    raise Refusal(400, "only members can be patched here", "invalidPath")
                changed += len(values)
                if kind == "add":
                    members.update((v, None) for v in values)
                elif kind == "remove" and (filtered or values):
                    if filtered and not any(v in members for v in values):
                        raise Refusal(400, "no member matches " + path_, "noTarget")
                    for v in values:
                        members.pop(v, None)
                elif kind == "replace" and not filtered:
                    members = {v: None for v in values}
                else:
                    raise Refusal(400, "unsupported operation " + kind, "invalidSyntax")
            if self.max and changed > self.max:
                raise Refusal(400, "a PATCH may change at most %d members, not %d" % (self.max, changed), "tooMany")
            self.groups[gid] = (name, members, version + 1)
            return 200, self.render(gid, query)


class Quirky:
    def __init__(self, opts):
        self.opts = opts
        self.store = Store(opts.db)
        self.core = core_schema(opts.narrow_schema, opts.require_name, opts.mutability_schema)
        self.hidden = {n.lower() for n in opts.hidden_user}
        self.extensions = [] if opts.narrow_schema else [enterprise_schema()]
        self.groups = Groups(opts.max_members_per_patch)

    # ---- helpers -------------------------------------------------------------------------

    def authorized(self, authorization):
        """The request's bearer token is ours, or (--introspect-url) active at the
        authorization server."""
        if not self.opts.introspect_url:
            return authorization == "Bearer " + self.opts.token
        if not authorization.startswith("Bearer ") or len(authorization) <= 7:
            return False
        import base64
        import urllib.request
        from urllib.parse import urlencode

        request = urllib.request.Request(
            self.opts.introspect_url,
            data=urlencode({"token": authorization[7:]}).encode(),
            headers={
                "Authorization": "Basic " + base64.b64encode(self.opts.introspect_client.encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer).get("active") is True
        except (OSError, ValueError) as e:
            sys.stderr.write("introspection failed: %s\n" % e)
            return False

    def declared(self):
        """Attribute name (lower) -> (sub-attribute names (lower) or None), per schema URN."""
        out = {}
        for schema in [self.core] + self.extensions:
            attrs = {}
            for a in schema["attributes"]:
                subs = a.get("subAttributes")
                attrs[a["name"].lower()] = None if subs is None else {s["name"].lower() for s in subs}
            out[schema["id"].lower()] = attrs
        return out

    def check_declared(self, body):
        """A 400 for the first attribute or sub-attribute the schema does not declare, in the
        words pydantic uses ("Extra inputs are not permitted: emails, 0, primary")."""
        declared = self.declared()
        core = declared[CORE.lower()]

        def check(attrs, obj, prefix):
            for key, value in obj.items():
                if not prefix and key.lower() in ("schemas", "id", "externalid", "meta"):
                    continue
                if not prefix and key.lower() in declared and key.lower() != CORE.lower():
                    if not isinstance(value, dict):
                        raise Refusal(400, "Extra inputs are not permitted: " + key, "invalidSyntax")
                    check(declared[key.lower()], value, [key])
                    continue
                if not prefix and key.lower() == CORE.lower() and isinstance(value, dict):
                    check(core, value, [key])
                    continue
                lk = key.lower()
                if lk not in attrs:
                    raise Refusal(400, "Extra inputs are not permitted: " + ", ".join(prefix + [key]), "invalidSyntax")
                subs = attrs[lk]
                if subs is None:
                    continue
                items = value if isinstance(value, list) else [value]
                for i, item in enumerate(items):
                    if not isinstance(item, dict):
                        continue
                    for sk in item:
                        if sk.lower() not in subs:
                            path = prefix + [key] + ([str(i)] if isinstance(value, list) else []) + [sk]
                            raise Refusal(400, "Extra inputs are not permitted: " + ", ".join(path), "invalidSyntax")

        check(core, body, [])

    def check_required(self, body):
        if not self.opts.require_name:
            return
        name = body.get(find_ci(body, "name") or "name")
        for sub in ("formatted", "familyName"):
            value = name.get(find_ci(name, sub) or sub) if isinstance(name, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise Refusal(400, "Missing required attribute: name." + sub, "invalidValue")

    def check_unique(self, body, other_than=None):
        user_name = body.get(find_ci(body, "userName") or "userName")
        if not isinstance(user_name, str) or not user_name:
            raise Refusal(400, "Missing required attribute: userName", "invalidValue")
        if self.opts.no_unique:
            return
        if self.store.by_user_name(user_name, other_than) or user_name.lower() in self.hidden:
            scim_type = None if self.opts.no_scim_type_409 else "uniqueness"
            status = 400 if self.opts.uniqueness_400 else 409
            raise Refusal(status, "UNIQUE constraint failed: users.user_name", scim_type)

    def read_only(self):
        """The attribute names (lower) the schema declares read-only."""
        return {a["name"].lower() for a in self.core["attributes"] if a.get("mutability") == "readOnly"}

    def drop_read_only(self, data):
        if self.opts.post_drops_read_only:
            for k in [k for k in data if k.lower() in self.read_only()]:
                del data[k]
        return data

    def check_immutable(self, before, after):
        """A 400 when a declared-immutable userName would change."""
        if not self.opts.mutability_schema:
            return
        old = before.get(find_ci(before, "userName") or "userName")
        new = after.get(find_ci(after, "userName") or "userName")
        if old != new:
            raise Refusal(400, "mutability: 'userName' is immutable", "mutability")

    def refuse_read_only_patch(self, body):
        if not self.opts.patch_refuses_read_only:
            return
        read_only = self.read_only()
        for op in body.get("Operations") or []:
            if not isinstance(op, dict):
                continue
            path = op.get("path")
            names = [path] if isinstance(path, str) else list(op.get("value") or {}) if isinstance(op.get("value"), dict) else []
            for name in names:
                if str(name).split("[")[0].split(".")[0].lower() in read_only:
                    raise Refusal(400, "mutability: '%s' is read-only" % name, "mutability")

    def clean(self, body):
        data = {k: v for k, v in body.items() if k.lower() not in ("id", "meta")}
        if "schemas" not in data:
            data["schemas"] = [CORE]
        return data

    # ---- filters -------------------------------------------------------------------------

    def parse_filter(self, text):
        """The equality filters a provisioning client sends: `a eq "v"`, `a.b eq "v"`,
        `a[type eq "t" and value eq "v"]`; anything else is a 400."""
        s = r'"((?:[^"\\]|\\.)*)"'
        m = re.fullmatch(r"\s*([\w:.$-]+?)(?:\.(\w+))?\s+eq\s+" + s + r"\s*", text)
        if m:
            return ("attr", m.group(1), m.group(2), None, json.loads('"%s"' % m.group(3)))
        m = re.fullmatch(r"\s*(\w+)\[\s*type\s+eq\s+" + s + r"\s+and\s+(\w+)\s+eq\s+" + s + r"\s*\]\s*", text)
        if m:
            return ("typed", m.group(1), m.group(3), json.loads('"%s"' % m.group(2)), json.loads('"%s"' % m.group(4)))
        raise Refusal(400, "unsupported filter: " + text, "invalidFilter")

    @staticmethod
    def matches(f, user):
        kind, a, sub, type_, value = f
        key = find_ci(user, a)
        if key is None:
            # A dotted name without a sub-attribute match: `name.familyName`.
            if "." in a:
                a, sub = a.rsplit(".", 1)
                key = find_ci(user, a)
            if key is None:
                return False
        v = user[key]
        items = v if isinstance(v, list) else [v]
        for item in items:
            if kind == "typed":
                if not isinstance(item, dict) or str(item.get("type", "")).lower() != type_.lower():
                    continue
            if sub or kind == "typed" or isinstance(item, dict):
                if not isinstance(item, dict):
                    continue
                sk = find_ci(item, sub or "value")
                item = item.get(sk) if sk else None
            if isinstance(item, bool):
                item = "true" if item else "false"
            if item is not None and str(item).lower() == value.lower():
                return True
        return False

    # ---- PATCH ---------------------------------------------------------------------------

    def refuse_patch(self, path):
        kind = self.opts.patch_refusal
        detail = "PATCH of %s is not implemented" % (path or "the resource without a path")
        if kind == "405":
            raise Refusal(405, detail)
        if kind in ("noTarget", "invalidPath"):
            raise Refusal(400, detail, kind)
        raise Refusal(501, detail)

    def apply_patch(self, user, body):
        ops = body.get("Operations") if isinstance(body, dict) else None
        if not isinstance(ops, list):
            raise Refusal(400, "PATCH needs Operations", "invalidSyntax")
        for op in ops:
            if not isinstance(op, dict):
                raise Refusal(400, "an operation is not an object", "invalidSyntax")
            name = str(op.get("op", "")).lower()
            path = op.get("path")
            value = op.get("value")
            if self.opts.patch_501 and (path is None or "." in path or "[" in path):
                self.refuse_patch(path)
            if name not in ("add", "replace", "remove"):
                raise Refusal(400, "unknown op " + name, "invalidSyntax")
            if path is None:
                if name == "remove" or not isinstance(value, dict):
                    raise Refusal(400, "no path", "noTarget")
                for k, v in value.items():
                    self.set_path(user, k, v, name)
                continue
            if name == "remove":
                self.remove_path(user, path)
            else:
                self.set_path(user, path, value, name)
        return user

    PATH = re.compile(r'^([\w:.$-]+?)(?:\[\s*type\s+eq\s+"([^"]*)"\s*\])?(?:\.(\w+))?$')

    def split(self, path):
        # An extension attribute: `urn:...:User:department`.
        for ext in [ENTERPRISE]:
            if path.lower().startswith(ext.lower() + ":"):
                return ext, path[len(ext) + 1 :], None, None
        m = self.PATH.match(path)
        if not m:
            raise Refusal(400, "invalid path " + path, "invalidPath")
        a, type_, sub = m.group(1), m.group(2), m.group(3)
        if type_ is None and sub is None and "." in a:
            a, sub = a.split(".", 1)
        return None, a, type_, sub

    def set_path(self, user, path, value, op):
        ext, a, type_, sub = self.split(path)
        target = user
        if ext:
            key = find_ci(user, ext) or ext
            target = user.setdefault(key, {})
        key = find_ci(target, a) or a
        if type_ is not None:
            items = target.setdefault(key, [])
            item = next((i for i in items if isinstance(i, dict) and str(i.get("type", "")).lower() == type_.lower()), None)
            if item is None:
                item = {"type": type_}
                items.append(item)
            if sub:
                item[find_ci(item, sub) or sub] = value
            elif isinstance(value, dict):
                item.update(value)
            return
        if sub:
            obj = target.setdefault(key, {})
            obj[find_ci(obj, sub) or sub] = value
            return
        if op == "add" and isinstance(target.get(key), list):
            target[key].extend(value if isinstance(value, list) else [value])
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key].update(value)
        else:
            target[key] = value

    def remove_path(self, user, path):
        ext, a, type_, sub = self.split(path)
        target = user
        if ext:
            target = user.get(find_ci(user, ext) or ext, {})
        key = find_ci(target, a)
        if key is None:
            return
        if type_ is not None:
            items = target[key] if isinstance(target[key], list) else []
            for item in items:
                if isinstance(item, dict) and str(item.get("type", "")).lower() == type_.lower():
                    if sub:
                        item.pop(find_ci(item, sub) or sub, None)
                    else:
                        item["__gone"] = True
            target[key] = [i for i in items if not (isinstance(i, dict) and i.get("__gone"))]
            return
        if sub:
            if isinstance(target[key], dict):
                target[key].pop(find_ci(target[key], sub) or sub, None)
            return
        del target[key]

    # ---- HTTP ----------------------------------------------------------------------------

    def spc(self):
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": not self.opts.no_filter, "maxResults": 10 if self.opts.cycling_pages else 200},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": True},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer", "description": "token"}],
            "meta": {"resourceType": "ServiceProviderConfig", "location": "/v2/ServiceProviderConfig"},
        }

    def resource_types(self):
        rt = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "schema": CORE,
            "schemaExtensions": [{"schema": e["id"], "required": False} for e in self.extensions],
            "meta": {"resourceType": "ResourceType", "location": "/v2/ResourceTypes/User"},
        }
        return listing([rt])

    def handle(self, method, path, query, headers, body):
        if path == "/v2/ServiceProviderConfig" and method == "GET":
            return 200, self.spc()
        if path == "/v2/Schemas" and method == "GET":
            return 200, listing([self.core] + self.extensions)
        if path == "/v2/ResourceTypes" and method == "GET":
            return 200, self.resource_types()
        if not self.authorized(headers.get("authorization") or ""):
            return 401, error(401, "bad or missing token")
        if path == "/v2/Users":
            if method == "GET":
                return self.list_users(query)
            if method == "POST":
                return self.create(body)
            return 405, error(405, "method not allowed")
        if path == "/v2/Groups" or path.startswith("/v2/Groups/"):
            return self.groups.handle(method, path, query, body)
        m = re.fullmatch(r"/v2/Users/([^/]+)", path)
        if not m:
            return 404, error(404, "no such endpoint " + path)
        uid = m.group(1)
        with self.store.lock:
            user = self.store.get(uid)
            if user is None:
                return 404, error(404, "User %s not found" % uid)
            match = headers.get("if-match")
            if match and method in ("PUT", "PATCH", "DELETE") and match != user["meta"]["version"]:
                return 412, error(412, "version mismatch", "invalidVers")
            if method == "GET":
                return 200, user
            if method == "DELETE":
                self.store.delete(uid)
                return 204, None
            if method == "PUT":
                data = self.drop_read_only(self.clean(json_object(body)))
                self.check_immutable(user, data)
                self.check_declared(data)
                self.check_required(data)
                self.check_unique(data, uid)
                return 200, self.store.replace(uid, data)
            if method == "PATCH":
                data = self.clean(user)
                patch = json_object(body)
                self.refuse_read_only_patch(patch)
                self.apply_patch(data, patch)
                self.check_immutable(user, data)
                self.check_declared(data)
                self.check_required(data)
                self.check_unique(data, uid)
                return 200, self.store.replace(uid, data)
        return 405, error(405, "method not allowed")

    def create(self, body):
        data = self.drop_read_only(self.clean(json_object(body)))
        self.check_declared(data)
        self.check_required(data)
        with self.store.lock:
            self.check_unique(data)
            created = self.store.insert(data)
        if self.opts.post_delay_ms:
            time.sleep(self.opts.post_delay_ms / 1000)
        return 201, created

    def list_users(self, query):
        paged = "count" in query or "startIndex" in query
        if self.opts.paging_500 and paged:
            return 500, {"detail": "Internal Server Error"}
        with self.store.lock:
            users = self.store.all()
        text = query.get("filter")
        if text is not None:
            if self.opts.no_filter and self.opts.filter_mode == "reject":
                return 400, error(400, "filtering is not supported", "invalidFilter")
            if not self.opts.no_filter:
                f = self.parse_filter(text)
                users = [u for u in users if self.matches(f, u)]
        total = len(users)
        start = max(int_param(query, "startIndex", 1), 1)
        count = int_param(query, "count", None)
        if self.opts.cycling_pages and text is None and users:
            page = users[(start - 1) % len(users) :][: max(min(count or 200, 200), 0)]
            return 200, listing(page, 1_000_000, start)
        if not paged and self.opts.default_page:
            count = self.opts.default_page
        if count is not None:
            count = max(min(count, 200), 0)
            page = users[start - 1 : start - 1 + count]
        else:
            page = users[start - 1 :]
        return 200, listing(page, total, start)


def listing(resources, total=None, start=1):
    return {
        "schemas": [LIST],
        "totalResults": len(resources) if total is None else total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def error(status, detail, scim_type=None):
    e = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        e["scimType"] = scim_type
    return e


def json_object(body):
    try:
        value = json.loads(body or b"null")
    except ValueError:
        raise Refusal(400, "the body is not JSON", "invalidSyntax")
    if not isinstance(value, dict):
        raise Refusal(400, "the body is not a JSON object", "invalidSyntax")
    return value


def int_param(query, name, default):
    if name not in query:
        return default
    try:
        return int(query[name])
    except ValueError:
        raise Refusal(400, "%s is not a number" % name, "invalidValue")


class TokenBucket:
    """--rate-limit: `rate` tokens a second, at most `rate` saved up; one per request."""

    def __init__(self, rate):
        self.rate, self.tokens, self.last = float(rate), float(rate), time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        """None when the request may go, else the whole seconds until a token."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return None
            return max(1, int(-(-(1 - self.tokens) // self.rate)))


def app_for(quirky):
    from urllib.parse import parse_qs

    bucket = TokenBucket(quirky.opts.rate_limit) if quirky.opts.rate_limit else None

    def app(environ, start_response):
        wait = bucket.take() if bucket else None
        if wait is not None:
            out = json.dumps(error(429, "too many requests: %g a second" % bucket.rate)).encode()
            start_response("429 Too Many Requests", [("Content-Length", str(len(out))),
                                                     ("Content-Type", SCIM_JSON), ("Retry-After", str(wait))])
            return [out]
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        headers = {
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "if-match": environ.get("HTTP_IF_MATCH"),
        }
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            status, payload = quirky.handle(method, path, query, headers, body)
        except Refusal as r:
            status, payload = r.status, error(r.status, r.detail, r.scim_type)
        except Exception as e:  # the server must answer, whatever the input
            status, payload = 500, error(500, "internal error: %s" % type(e).__name__)
        reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
                  404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 412: "Precondition Failed",
                  500: "Internal Server Error", 501: "Not Implemented"}.get(status, "Status")
        out = b"" if payload is None else json.dumps(payload).encode()
        hdrs = [("Content-Length", str(len(out)))]
        if payload is not None:
            hdrs.append(("Content-Type", SCIM_JSON))
        if isinstance(payload, dict) and isinstance(payload.get("meta"), dict) and payload["meta"].get("version"):
            hdrs.append(("ETag", payload["meta"]["version"]))
        start_response("%d %s" % (status, reason), hdrs)
        return [out]

    return app


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", default=None)
    p.add_argument("--db", default=None)
    p.add_argument("--narrow-schema", action="store_true")
    p.add_argument("--require-name", action="store_true")
    p.add_argument("--patch-501", action="store_true")
    p.add_argument("--patch-refusal", default="501", choices=["501", "noTarget", "invalidPath", "405"])
    p.add_argument("--no-filter", action="store_true")
    p.add_argument("--filter-mode", default="ignore", choices=["ignore", "reject"])
    p.add_argument("--no-scim-type-409", action="store_true")
    p.add_argument("--no-unique", action="store_true")
    p.add_argument("--uniqueness-400", action="store_true")
    p.add_argument("--paging-500", action="store_true")
    p.add_argument("--default-page", type=int, default=0)
    p.add_argument("--post-delay-ms", type=int, default=0)
    p.add_argument("--cycling-pages", action="store_true")
    p.add_argument("--mutability-schema", action="store_true")
    p.add_argument("--post-drops-read-only", action="store_true")
    p.add_argument("--patch-refuses-read-only", action="store_true")
    p.add_argument("--hidden-user", action="append", default=[])
    p.add_argument("--rate-limit", type=float, default=0)
    p.add_argument("--max-members-per-patch", type=int, default=0)
    p.add_argument("--introspect-url", default=None)
    p.add_argument("--introspect-client", default=None)
    opts = p.parse_args()
    if not opts.introspect_url and not opts.token:
        p.error("--token is required (or --introspect-url and --introspect-client)")
    if opts.introspect_url and ":" not in (opts.introspect_client or ""):
        p.error("--introspect-url needs --introspect-client ID:SECRET")
    server = make_server(opts.host, opts.port, app_for(Quirky(opts)), ThreadingServer, QuietHandler)
    sys.stderr.write("quirky SCIM server on http://%s:%d/v2 %s\n" % (opts.host, opts.port, sys.argv[1:]))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
