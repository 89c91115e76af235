"""`plan` passes the component only what the scope reads (`scope_fields`), and plans as if every
field had crossed. Nothing is sent: the connectors point at a closed port."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from scim_provisioner_host import (CmsUser, Connector, GuestTrap, HttpResponse, MemoryLimitExceeded, PlannedAction,
                                   Runtime)

NOWHERE = "http://127.0.0.1:9/v2"
PLAN = "[method]connector.plan"
SCOPE_FIELDS = "[method]connector.scope-fields"
ROLE_SCOPE = {"scope": {"field": "roles", "any_of": ["member"]}}
# Many fields the scope does not read, a list among them, beside the one it does.
OTHERS = {"name": "ann", "mail": "ann@example.org", "field_first_name": "Ann", "field_last_name": "Lee",
          "nick": None, "level": 3, "verified": True, "groups": ["staff", "board"], "bio": "é" * 4096}


def connect(runtime: Runtime, policy: dict, **extra: Any) -> Connector:
    return Connector.open(runtime, {"base_url": NOWHERE, "token": "some-token-value", "policy": policy}, **extra)


Crossed = tuple[str, list[tuple[str, Any]], bool]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Optional[Crossed]]]:
    """Every export call of every Connector in the test, with the cms-user of each `plan` call as
    it crossed (already in the component's value form): (id, fields, active). Patched on the
    class, so no connector holds a reference to itself (a cycle would free its store late)."""
    recorded: list[tuple[str, Optional[Crossed]]] = []
    inner = Connector._call

    def recording(self: Connector, name: str, args: list[Any]) -> Any:
        user = args[1] if name == PLAN else None
        recorded.append((name, None if user is None else (user.id, list(user.fields), user.active)))
        return inner(self, name, args)

    monkeypatch.setattr(Connector, "_call", recording)
    return recorded


def crossed_users(calls: list[tuple[str, Optional[Crossed]]]) -> list[Optional[Crossed]]:
    return [user for name, user in calls if name == PLAN]


def asked_scope(calls: list[tuple[str, Optional[Crossed]]]) -> int:
    return [name for name, _ in calls].count(SCOPE_FIELDS)


CASES = [  # (roles or None for no such field, active, event, linked, the plan's action)
    (["member"], True, "created", False, PlannedAction.CREATE),
    (["editor", "member"], True, "updated", True, PlannedAction.UPDATE),
    (["editor"], True, "created", False, PlannedAction.SKIP),
    (["editor"], True, "updated", True, PlannedAction.DEACTIVATE),
    (None, True, "created", False, PlannedAction.SKIP),
    (["member"], False, "blocked", True, PlannedAction.DEACTIVATE),
    (["member"], True, "unblocked", True, PlannedAction.REACTIVATE),
]


def test_plan_passes_only_the_fields_the_scope_reads(runtime, calls):
    c = connect(runtime, ROLE_SCOPE)
    assert c.scope_fields() == ["roles"]
    for i, (roles, active, event, linked, action) in enumerate(CASES):
        only = {} if roles is None else {"roles": roles}
        rich = CmsUser(str(100 + i), {**OTHERS, **only, "zip": "12345"}, active=active)
        bare = CmsUser(str(200 + i), only, active=active)
        got, want = c.plan(rich, event, linked), c.plan(bare, event, linked)
        assert (got.action, got.reason) == (want.action, want.reason), (i, got, want)
        assert got.action == action, (i, got)
        assert (got.reason is None) == (action != PlannedAction.SKIP), (i, got)
        # What crossed: no id (the scope does not read it), the roles alone, the active flag.
        wit_roles = [] if roles is None else [("roles", roles)]
        assert crossed_users(calls)[-2:] == [("", wit_roles, active), ("", wit_roles, active)], i
    assert len(crossed_users(calls)) == 2 * len(CASES)
    # Asked once, when the connector opened, not per plan nor per scope_fields().
    assert c.scope_fields() == ["roles"]
    assert asked_scope(calls) == 1 and c.instances_opened == 1
    c.close()


def test_with_id_in_the_scope_the_id_crosses_and_decides(runtime, calls):
    c = connect(runtime, {"scope": {"any": [{"field": "@id", "equals": "42"},
                                            {"all": [{"field": "level", "equals": 3}, {"field": "@active", "equals": True}]},
                                            {"field": "roles", "any_of": ["member"]}]}})
    # Each once, in the scope's order; `@active` is the active flag, which always crosses.
    assert c.scope_fields() == ["@id", "level", "roles"]
    fields = {**OTHERS, "level": 2, "roles": ["editor"]}
    assert c.plan(CmsUser("42", fields), "created", False).action == PlannedAction.CREATE
    assert c.plan(CmsUser("43", fields), "created", False).action == PlannedAction.SKIP
    assert c.plan(CmsUser("43", fields), "updated", True).action == PlannedAction.DEACTIVATE
    assert c.plan(CmsUser("43", {**fields, "level": 3}), "created", False).action == PlannedAction.CREATE
    assert c.plan(CmsUser("43", {**fields, "level": 3}, active=False), "created", False).action == PlannedAction.SKIP
    # The id, and of the fields only what the scope reads, in the user's order (not the scope's).
    assert crossed_users(calls)[:2] == [("42", [("level", 2.0), ("roles", ["editor"])], True),
                                        ("43", [("level", 2.0), ("roles", ["editor"])], True)]
    c.close()


def test_without_a_scope_nothing_but_active_crosses(runtime, calls):
    c = connect(runtime, {})
    assert c.scope_fields() == []
    assert c.plan(CmsUser("7", OTHERS), "created", False).action == PlannedAction.CREATE
    assert c.plan(CmsUser("7", OTHERS, active=False), "blocked", True).action == PlannedAction.DEACTIVATE
    assert crossed_users(calls) == [("", [], True), ("", [], False)]
    c.close()


class Canned:
    """A transport answering every request with one body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def send(self, request: Any) -> HttpResponse:
        return HttpResponse(200, [("Content-Type", "application/scim+json")], self.body)


def test_a_fresh_instance_after_a_trap_asks_for_the_scope_again(calls):
    rt = Runtime(memory_limit_bytes=4 * 1024 * 1024)
    big = json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "x", "userName": "u",
                      "displayName": "d" * (1 << 20)}).encode()
    try:
        c = connect(rt, ROLE_SCOPE, transport=Canned(big))
        with pytest.raises(GuestTrap) as e:
            c.get_user("x")
        assert isinstance(e.value, MemoryLimitExceeded), e.value
        assert asked_scope(calls) == 1
        # The next call opens a fresh instance, which is asked again before plan cuts the user.
        member = CmsUser("1", {**OTHERS, "roles": ["member"]})
        assert c.plan(member, "created", False).action == PlannedAction.CREATE
        assert c.instances_opened == 2 and asked_scope(calls) == 2
        assert crossed_users(calls) == [("", [("roles", ["member"])], True)]
        assert c.scope_fields() == ["roles"]
        c.close()
    finally:  # a Runtime left open when a failure keeps its connector alive aborts the interpreter at exit
        rt.close()
