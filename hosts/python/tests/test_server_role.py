"""The server role: the component served by Python (wsgiref) over the sqlite3 directory,
checked by third-party conformance suites and over plain HTTP."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import Served, http, tool
from scim_provisioner_host import (Action, CmsUser, Connector, DirectoryError, QueryPage, Request, ResourceKind,
                                   Runtime, ScimServer, Search, Selection, SqliteDirectory, StoredResource)


def run_tool(args: list[str], env: dict | None = None) -> tuple[int, str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    return out.returncode, out.stdout + out.stderr


def test_scim2_tester_passes_every_check(served: Served):
    rc, text = run_tool(tool("scim2") + ["--url", served.base_url, "test"],
                        {"SCIM_CLI_HEADERS": f"Authorization: Bearer {served.token}"})
    successes = [l for l in text.splitlines() if l.startswith("SUCCESS")]
    failures = [l for l in text.splitlines() if l.startswith(("ERROR", "FAIL", "CRITICAL"))]
    assert rc == 0, text
    assert not failures, "\n".join(failures)
    assert len(successes) >= 100, f"only {len(successes)} checks ran:\n{text}"
    print(f"scim2-tester: {len(successes)} checks passed")


def test_scim_sanity_passes(served: Served):
    rc, text = run_tool(tool("scim-sanity") + ["probe", served.base_url, "--token", served.token,
                                               "--i-accept-side-effects"])
    assert rc == 0, text
    assert "[FAIL]" not in text, text
    assert "All tests passed" in text, text


def test_requests_without_the_token_get_401_but_discovery_answers(served: Served):
    status, body = http("GET", f"{served.base_url}/Users", "wrong")
    assert status == 401 and body["status"] == "401"
    status, _ = http("GET", f"{served.base_url}/ServiceProviderConfig", "wrong")
    assert status == 200


def test_identity_provider_users_appear_in_the_cms(served: Served):
    users = f"{served.base_url}/Users"
    status, created = http("POST", users, served.token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "okta.user",
        "name": {"givenName": "Olga", "familyName": "Kta"},
        "emails": [{"type": "work", "value": "olga@idp.example", "primary": True}], "active": True})
    assert status == 201, created
    uid = created["id"]
    cms = served.directory.cms_user(uid)
    assert cms is not None
    assert cms["name"] == "okta.user" and cms["mail"] == "olga@idp.example"
    assert cms["fields"]["field_first_name"] == "Olga" and cms["fields"]["field_last_name"] == "Kta"
    assert cms["active"] is True
    status, body = http("PATCH", f"{users}/{uid}", served.token, {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert status == 200, body
    assert served.directory.cms_user(uid)["active"] is False
    # Filters the SQL cannot answer are evaluated by the Python port of the filter engine.
    status, body = http("GET", f"{users}?filter=name.givenName%20sw%20%22ol%22%20and%20active%20eq%20false",
                        served.token)
    assert status == 200 and body["totalResults"] == 1, body
    status, body = http("GET", f"{users}?filter=userName%20eq", served.token)
    assert status == 400 and body["scimType"] == "invalidFilter", body
    status, _ = http("DELETE", f"{users}/{uid}", served.token)
    assert status == 204
    assert served.directory.cms_user(uid) is None


def test_the_python_client_provisions_into_the_python_server(runtime, served: Served):
    c = Connector.open(runtime, {"base_url": served.base_url, "token": served.token,
                                 "policy": {"operations": {"delete": True}, "deprovision": "delete"}})
    user = CmsUser("7", {"name": "carol", "mail": "carol@example.com", "field_first_name": "Carol"})
    created = c.provision(user, "created")
    assert created.action == Action.CREATED
    assert served.directory.cms_user(created.link.remote_id)["name"] == "carol"
    changed = CmsUser("7", {"name": "carol", "mail": "carol@example.com", "field_first_name": "Caroline"})
    assert c.provision(changed, "updated", created.link).action == Action.UPDATED
    assert served.directory.cms_user(created.link.remote_id)["fields"]["field_first_name"] == "Caroline"
    assert c.provision(changed, "deleted", created.link).action == Action.DELETED
    assert served.directory.cms_user(created.link.remote_id) is None


class FailingDirectory:
    """A directory whose store is down: every call raises `unavailable`."""

    def get(self, kind, id):
        raise DirectoryError("unavailable", "the database is down")

    def query(self, kind, search):
        raise DirectoryError("unavailable", "the database is down")

    def create(self, kind, json_text, cms):
        raise DirectoryError("unavailable", "the database is down")

    def replace(self, kind, id, json_text, cms, if_version):
        raise DirectoryError("unavailable", "the database is down")

    def delete(self, kind, id):
        raise DirectoryError("unavailable", "the database is down")


def test_directory_errors_cross_the_boundary_even_from_get(runtime):
    # directory.get returns result<option<stored-resource>, directory-error>, the shape
    # wasmtime-py cannot lower as an error by itself (see README): this proves the Err path.
    server = ScimServer.open(runtime, {"base_url": "http://127.0.0.1/scim/v2", "token": "server-token"},
                             FailingDirectory())
    auth = [("Authorization", "Bearer server-token")]
    resp = server.handle(Request("GET", "/Users/abc", "", auth))
    assert resp.status == 503, resp.body
    resp = server.handle(Request("GET", "/Users", "", auth))
    assert resp.status == 503, resp.body
    resp = server.handle(Request("DELETE", "/Users/abc", "", auth))
    assert resp.status == 503, resp.body


def test_directory_semantics(runtime, tmp_path):
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    a = d.create(ResourceKind.USER, '{"userName":"Ann","externalId":"e1"}', None)
    assert a.version == 'W/"1"'
    with pytest.raises(DirectoryError) as e:
        d.create(ResourceKind.USER, '{"userName":"ANN"}', None)
    assert e.value.case == "conflict"
    with pytest.raises(DirectoryError) as e:
        d.replace(ResourceKind.USER, a.id, '{"userName":"Ann"}', None, 'W/"9"')
    assert e.value.case == "version-mismatch"
    b = d.replace(ResourceKind.USER, a.id, '{"userName":"Ann2"}', CmsUser("x", {"mail": "a@x"}, False), 'W/"1"')
    assert b.version == 'W/"2"'
    assert d.cms_user(a.id) == {"id": a.id, "name": "Ann2", "mail": "a@x", "fields": {}, "active": False}
    g = d.create(ResourceKind.GROUP, '{"displayName":"G","members":[{"value":"%s"}]}' % a.id, None)
    page = d.query(ResourceKind.USER, Search('userName eq "ann2"'))
    assert isinstance(page, QueryPage) and [r.id for r in page.resources] == [a.id]
    assert d.query(ResourceKind.USER, Search(None, 1, 0)).total_results == 1
    with pytest.raises(DirectoryError) as e:
        d.query(ResourceKind.USER, Search("userName eq"))
    assert e.value.case == "invalid-filter"
    assert d.delete(ResourceKind.USER, a.id) is True
    assert d.delete(ResourceKind.USER, a.id) is False
    assert '"members":[]' in d.get(ResourceKind.GROUP, g.id).json
    with pytest.raises(DirectoryError) as e:
        d.replace(ResourceKind.USER, "missing", "{}", None, None)
    assert e.value.case == "not-found"
    assert isinstance(d.get(ResourceKind.GROUP, g.id), StoredResource)


def _group_names(d: SqliteDirectory, filter: str) -> list[str]:
    page = d.query(ResourceKind.GROUP, Search(filter, sort_by="displayName"))
    return [json.loads(r.json)["displayName"] for r in page.resources]


def _group(d: SqliteDirectory, name: str, members: list[str]) -> str:
    return d.create(ResourceKind.GROUP, json.dumps({"displayName": name,
                                                    "members": [{"value": m} for m in members]}), None).id


def test_a_users_groups_are_found_through_the_membership_index(runtime, tmp_path):
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    ann = d.create(ResourceKind.USER, '{"userName":"ann"}', None).id
    bob = d.create(ResourceKind.USER, '{"userName":"bob"}', None).id
    both = _group(d, "both", [ann, bob])
    only_bob = _group(d, "only-bob", [bob])
    _group(d, "empty", [])

    def of(id: str) -> str:
        return f'members[value eq "{id}"]'

    assert _group_names(d, of(bob)) == ["both", "only-bob"]
    assert _group_names(d, of(ann)) == ["both"]
    assert _group_names(d, f'members.value eq "{ann}"') == ["both"], "the other form"
    assert _group_names(d, of(ann.upper())) == ["both"], "case-insensitive, as the filter engine decides"
    assert _group_names(d, of("nobody")) == []
    d.replace(ResourceKind.GROUP, both, json.dumps({"displayName": "both", "members": [{"value": ann}]}), None, None)
    assert _group_names(d, of(bob)) == ["only-bob"], "a replace moves the index"
    assert d.delete(ResourceKind.GROUP, only_bob) is True
    assert _group_names(d, of(bob)) == []
    assert d.delete(ResourceKind.USER, ann) is True
    assert _group_names(d, of(ann)) == [], "a deleted user leaves their groups"
    assert ann not in d.get(ResourceKind.GROUP, both).json
    assert d.conn.execute("SELECT COUNT(*) FROM scim_group_members").fetchone()[0] == 0


def test_a_database_without_the_membership_index_gets_one_filled_from_its_groups(runtime, tmp_path):
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    ann = d.create(ResourceKind.USER, '{"userName":"ann"}', None).id
    _group(d, "staff", [ann])
    d.conn.execute("DROP TABLE scim_group_members")
    d.close()
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    assert _group_names(d, f'members[value eq "{ann.upper()}"]') == ["staff"]
    assert d.conn.execute("SELECT COUNT(*) FROM scim_group_members").fetchone()[0] == 1

    # As a database written before `member_value`: the index is rebuilt with it.
    d.conn.execute("DROP TABLE scim_group_members")
    d.conn.execute("""CREATE TABLE scim_group_members (group_id TEXT NOT NULL, member_key TEXT NOT NULL,
        PRIMARY KEY (group_id, member_key)) WITHOUT ROWID""")
    d.conn.execute("INSERT INTO scim_group_members SELECT id, 'stale' FROM scim_groups")
    d.close()
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    assert [tuple(r) for r in d.conn.execute("SELECT member_key, member_value FROM scim_group_members")] == \
        [(ann.lower(), ann)]
    assert d.conn.execute("SELECT COUNT(*) FROM scim_group_members").fetchone()[0] == 1
    assert _group_names(d, f'members[value eq "{ann}"]') == ["staff"]
    page = d.query(ResourceKind.GROUP, Search(f'members[value eq "{ann}"]'))
    assert page.total_results == 1 and [json.loads(r.json)["displayName"] for r in page.resources] == ["staff"]
    d.close()


def test_a_member_lookup_is_paged_from_the_index_and_agrees_with_select(runtime, tmp_path, monkeypatch):
    """`members[value eq "<id>"]` unsorted (how the component reads a user's groups): paged from
    the index when every candidate holds the exact value, by the component's `select` when one
    holds a case variant; both give what the sorted query (always `select`) gives."""
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    ann = d.create(ResourceKind.USER, '{"userName":"ann"}', None).id
    bob = d.create(ResourceKind.USER, '{"userName":"bob"}', None).id
    for name in ["g1", "g2", "g3", "g4", "g5"]:
        _group(d, name, [ann])
    _group(d, "bob's", [bob])
    selects: list[Search] = []
    real_select = d.selector.select

    def counting_select(resources, search: Search):
        selects.append(search)
        return real_select(resources, search)

    monkeypatch.setattr(d.selector, "select", counting_select)

    def page(value: str, start_index: int = 1, count: int = 100) -> tuple[int, list[str]]:
        p = d.query(ResourceKind.GROUP, Search(f'members[value eq "{value}"]', start_index, count))
        return p.total_results, [json.loads(r.json)["displayName"] for r in p.resources]

    assert page(ann, 1, 100) == (5, ["g1", "g2", "g3", "g4", "g5"])
    assert page(ann, 2, 2) == (5, ["g2", "g3"])
    assert page(ann, 5, 10) == (5, ["g5"])
    assert page(ann, 6, 10) == (5, [])
    assert page(ann, 1, 0) == (5, [])
    assert page("nobody", 1, 10) == (0, [])
    p = d.query(ResourceKind.GROUP, Search(f'members.value eq "{bob}"'))
    assert (p.total_results, [json.loads(r.json)["displayName"] for r in p.resources]) == (1, ["bob's"])
    assert selects == [], "every candidate held the exact value: no select"
    # Not member lookups the component's parser accepts: its `select` says so, as for any filter.
    for bad in [f'members [value eq "{ann}"]', 'members[value eq "\\ud800"]']:
        with pytest.raises(DirectoryError) as e:
            d.query(ResourceKind.GROUP, Search(bad))
        assert e.value.case == "invalid-filter", bad

    # A group holding a case variant of the value: not exact, so `select` decides, and the
    # unsorted and sorted queries agree on every lookup.
    variant = ann.upper()
    assert variant != ann
    _group(d, "g0-variant", [variant])
    for value in [ann, variant]:
        selects.clear()
        total, unsorted = page(value)
        assert len(selects) == 1, "a case variant among the candidates: select decides"
        sorted_names = _group_names(d, f'members[value eq "{value}"]')
        assert sorted(unsorted) == sorted_names, value
        assert total == len(sorted_names) == 6, value
    assert sorted_names == ["g0-variant", "g1", "g2", "g3", "g4", "g5"]
    d.close()


def test_directory_filters_sorts_and_pages_with_the_components_engine(runtime, tmp_path):
    """Everything beyond the SQL fast paths is decided by the component (WIT
    ``selection.select`` on the directory's own instance): numbers sort as numbers, a
    multi-valued attribute by its primary value, missing values last; value filters, ``meta``
    and case rules are the guest's; a filter that does not parse is invalid-filter."""
    d = SqliteDirectory.open(tmp_path / "d.db", runtime)
    ids = {}
    for name, n, emails, ext in [
        ("zed", 10, [{"value": "z@x", "type": "home"}, {"value": "b@x", "type": "work", "primary": True}], "E1"),
        ("amy", 9, [{"value": "a@x", "type": "work"}], None),
        ("Bob", None, [{"value": "c@x", "type": "home", "primary": True}], "e2"),
    ]:
        doc = {"userName": name, "emails": emails}
        if n is not None:
            doc["n"] = n
        if ext is not None:
            doc["externalId"] = ext
        ids[name] = d.create(ResourceKind.USER, json.dumps(doc), None).id

    def names(filter=None, sort_by=None, desc=False, start=1, count=10):
        page = d.query(ResourceKind.USER, Search(filter, start, count, sort_by, desc))
        by_id = {v: k for k, v in ids.items()}
        return page.total_results, [by_id[r.id] for r in page.resources]

    assert names(sort_by="n") == (3, ["amy", "zed", "Bob"]), "9 < 10 as numbers; no value last"
    assert names(sort_by="n", desc=True) == (3, ["Bob", "zed", "amy"]), "descending: no value first"
    assert names(sort_by="emails") == (3, ["amy", "zed", "Bob"]), "a@x < b@x (primary) < c@x"
    assert names(sort_by="userName") == (3, ["amy", "Bob", "zed"]), "strings sort case-insensitively"
    assert names('emails[type eq "work" and value ew "@x"]', "userName") == (2, ["amy", "zed"])
    assert names("n gt 9.5") == (1, ["zed"]), "numbers compare as numbers"
    assert names('externalId eq "e1"') == (0, []), "externalId is case-exact (SQL fast path)"
    assert names('userName eq "BOB"') == (1, ["Bob"]), "userName is not (SQL fast path)"
    assert names(f'meta.version eq "W/\\"1\\"" and id eq "{ids["amy"]}"') == (1, ["amy"])
    assert names("not (n pr)") == (1, ["Bob"])
    assert names("userName pr", "userName", start=2, count=1) == (3, ["Bob"]), "a page of the sorted matches"
    assert names("userName pr", count=0) == (3, []), "count 0: the total only"
    for bad in ("userName eq", 'emails[type eq "work"', "(" * 70 + "a pr" + ")" * 70):
        with pytest.raises(DirectoryError) as e:
            names(bad)
        assert e.value.case == "invalid-filter", bad
    with pytest.raises(DirectoryError) as e:
        names(sort_by="a[b")
    assert e.value.case == "other"
    assert d.selector.instances_opened == 1, "one dedicated instance answered every search"


def test_the_selector_is_usable_on_its_own_and_recovers_from_a_trap():
    from scim_provisioner_host import GuestTrap, Selector
    rt = Runtime(memory_limit_bytes=2 * 1024 * 1024)
    selector = Selector(rt)
    views = [{"id": str(i), "userName": f"u{i}", "active": i % 2 == 0} for i in range(10)]
    assert selector.select(views, Search("active eq true", 2, 2)) == Selection(5, [2, 4])
    with pytest.raises(GuestTrap):
        selector.select(['{"x":"' + "y" * (4 << 20) + '"}'], Search("x pr"))
    assert selector.select(views, Search(None, 1, 0, "userName")) == Selection(10, [])
    assert selector.instances_opened == 2, "the trapped instance was replaced"
    rt.close()
