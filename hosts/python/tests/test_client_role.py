"""The client role against a real scim2-server: every result read back over plain HTTP."""

from __future__ import annotations

import json
import logging
import secrets

import pytest

from conftest import Peer, http
from scim_provisioner_host import (Action, BatchItem, CmsUser, Connector, HttpTransport, Link, PlannedAction,
                                   ProvisioningError, ProvisionOutcome)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def alice(name: str, **fields: object) -> CmsUser:
    base = {"name": name, "mail": f"{name}@example.com", "field_first_name": "Alice", "field_last_name": "Liddell",
            "roles": ["editor"]}
    base.update(fields)
    return CmsUser(name, base, active=True)


def connect(runtime, peer: Peer, **extra) -> Connector:
    return Connector.open(runtime, {"base_url": peer.base_url, "token": peer.token, "timeout": 10000, **extra})


def test_connection_reports_the_servers_capabilities(runtime, scim2_server):
    caps = connect(runtime, scim2_server).test_connection()
    assert caps.discovered is True
    assert caps.patch is True
    assert caps.bulk is not None and caps.bulk.max_operations > 0
    assert caps.filter_max_results and caps.filter_max_results > 0


class Recording:
    """The default transport, recording each request's method and URL."""

    def __init__(self, base_url: str) -> None:
        self.inner = HttpTransport(base_url)
        self.sent: list[tuple[str, str]] = []

    def send(self, request):
        self.sent.append((request.method, request.url))
        return self.inner.send(request)

    def methods_since(self, mark: int) -> list[str]:
        return [m for m, _ in self.sent[mark:]]


def test_create_update_deactivate_reactivate_delete(runtime, scim2_server):
    rec = Recording(scim2_server.base_url)
    c = Connector.open(runtime, {"base_url": scim2_server.base_url, "token": scim2_server.token,
                                 "policy": {"operations": {"delete": True}, "deprovision": "delete"}}, transport=rec)
    name = unique("alice")
    user = alice(name)

    assert c.plan(user, "created", False).action == PlannedAction.CREATE
    created = c.provision(user, "created", None)
    assert created.action == Action.CREATED
    assert created.link is not None and created.link.snapshot
    status, remote = scim2_server.get(f"/Users/{created.link.remote_id}")
    assert status == 200
    assert remote["userName"] == name
    assert remote["name"]["familyName"] == "Liddell"
    assert remote["active"] is True

    # Nothing changed: nothing is sent.
    same = c.provision(user, "updated", created.link)
    assert same.action == Action.UNCHANGED and same.requests == 0

    # A change travels as a PATCH computed from the snapshot.
    changed = alice(name, field_last_name="Hargreaves")
    assert c.plan(changed, "updated", True).action == PlannedAction.UPDATE
    mark = len(rec.sent)
    updated = c.provision(changed, "updated", created.link)
    assert rec.methods_since(mark) == ["PATCH"], rec.sent[mark:]
    assert updated.action == Action.UPDATED
    assert updated.link is not None and updated.link.remote_id == created.link.remote_id
    _, remote = scim2_server.get(f"/Users/{created.link.remote_id}")
    assert remote["name"]["familyName"] == "Hargreaves"

    blocked = CmsUser(name, dict(changed.fields), active=False)
    assert c.plan(blocked, "blocked", True).action == PlannedAction.DEACTIVATE
    mark = len(rec.sent)
    deactivated = c.provision(blocked, "blocked", updated.link)
    assert "PATCH" in rec.methods_since(mark), rec.sent[mark:]
    assert deactivated.action == Action.DEACTIVATED
    _, remote = scim2_server.get(f"/Users/{created.link.remote_id}")
    assert remote["active"] is False

    assert c.plan(changed, "unblocked", True).action == PlannedAction.REACTIVATE
    reactivated = c.provision(changed, "unblocked", deactivated.link)
    assert reactivated.action in (Action.UPDATED,)
    _, remote = scim2_server.get(f"/Users/{created.link.remote_id}")
    assert remote["active"] is True

    assert c.plan(changed, "deleted", True).action == PlannedAction.DELETE
    mark = len(rec.sent)
    deleted = c.provision(changed, "deleted", reactivated.link)
    assert rec.methods_since(mark) == ["DELETE"], rec.sent[mark:]
    assert deleted.action == Action.DELETED
    assert deleted.link is None
    status, _ = scim2_server.get(f"/Users/{created.link.remote_id}")
    assert status == 404
    assert c.get_user(created.link.remote_id) is None


def test_an_existing_remote_user_is_adopted(runtime, scim2_server):
    name = unique("adopt")
    status, existing = http("POST", f"{scim2_server.base_url}/Users", scim2_server.token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": True})
    assert status == 201, existing
    outcome = connect(runtime, scim2_server).provision(alice(name), "created")
    assert outcome.action == Action.ADOPTED
    assert outcome.link is not None and outcome.link.remote_id == existing["id"]
    _, remote = scim2_server.get(f"/Users/{existing['id']}")
    assert remote["emails"][0]["value"] == f"{name}@example.com"  # brought in line after adoption
    assert remote["externalId"] == name


def test_values_cross_the_boundary_both_ways(runtime, scim2_server):
    c = connect(runtime, scim2_server)
    name = unique("zoë")
    user = CmsUser(name, {"name": name, "mail": f"{name}@example.com", "field_first_name": "Zoë 🌍 Ünïcødé",
                          "field_last_name": "Ω" * 300, "roles": ["a", "b"], "age": 42, "score": 1.5,
                          "flag": True, "nothing": None}, active=True)
    mapped = c.map_user(user)
    assert mapped["name"]["givenName"] == "Zoë 🌍 Ünïcødé"
    outcome = c.provision(user, "created")
    assert outcome.action == Action.CREATED
    fetched = c.get_user(outcome.link.remote_id)
    assert fetched is not None and fetched["name"]["familyName"] == "Ω" * 300
    _, remote = scim2_server.get(f"/Users/{outcome.link.remote_id}")
    assert remote["name"]["givenName"] == "Zoë 🌍 Ünïcødé"


def test_batch_provisions_several_users_through_bulk(runtime, scim2_server):
    c = connect(runtime, scim2_server)
    names = [unique(f"batch{i}") for i in range(3)]
    outcome = c.provision_batch([BatchItem(alice(n), "created") for n in names])
    assert len(outcome.results) == 3
    assert all(isinstance(r, ProvisionOutcome) and r.action == Action.CREATED for r in outcome.results), outcome
    assert outcome.bulk_requests >= 1
    for n, r in zip(names, outcome.results):
        remote = scim2_server.user_by_name(n)
        assert remote is not None and remote["id"] == r.link.remote_id


def test_remote_index_is_listed_exported_and_imported(runtime, scim2_server):
    first = connect(runtime, scim2_server)
    name = unique("indexed")
    first.provision(alice(name), "created")
    assert first.export_remote_index() is None
    listing = first.index_remote_users()
    assert listing.users >= 1 and listing.requests >= 1
    doc = first.export_remote_index()
    assert isinstance(doc, str) and name in doc
    second = connect(runtime, scim2_server)
    assert second.remote_user_ids() == []
    assert second.import_remote_index(doc) == listing.users
    ids = first.remote_user_ids()
    assert len(ids) == listing.users and all(isinstance(i, str) for i in ids)
    assert second.remote_user_ids() == ids
    # Matching now happens locally: the existing user is adopted with no look-up request.
    adopted = second.provision(alice(name), "reconcile")
    assert adopted.action == Action.ADOPTED
    with pytest.raises(ProvisioningError) as e:
        second.import_remote_index("not a document")
    assert e.value.case in ("invalid-config", "other", "unexpected-response")


def test_a_wrong_token_is_a_scim_error_with_status(runtime, scim2_server):
    c = Connector.open(runtime, {"base_url": scim2_server.base_url, "token": "wrong-token-value"})
    with pytest.raises(ProvisioningError) as e:
        c.provision(alice(unique("denied")), "created")
    assert e.value.case in ("scim", "unexpected-response")
    assert e.value.status == 401
    assert e.value.retry == "permanent" and not e.value.retryable


def test_configuration_errors_are_clear(runtime, scim2_server):
    with pytest.raises(ProvisioningError) as e:
        Connector.open(runtime, {"base_url": scim2_server.base_url, "tokn": "x"})
    assert e.value.case == "invalid-config" and "unknown setting 'tokn'" in str(e.value)
    with pytest.raises(ProvisioningError) as e:
        Connector.open(runtime, {"base_url": scim2_server.base_url, "token_env": "SCIM_PY_TEST_UNSET_VARIABLE"})
    assert "SCIM_PY_TEST_UNSET_VARIABLE" in str(e.value)
    # The component validates the policy itself: its invalid-config crosses the boundary.
    with pytest.raises(ProvisioningError) as e:
        Connector.open(runtime, {"base_url": scim2_server.base_url, "token": "t0ken-value",
                                 "policy": {"operations": "everything"}})
    assert e.value.case == "invalid-config"
    with pytest.raises(ProvisioningError) as e:
        Connector.open(runtime, {"base_url": "ftp://example.com/scim", "token": "t0ken-value"})
    assert e.value.case == "invalid-config"
    with pytest.raises(ValueError, match="field bad"):
        CmsUser("1", {"bad": {"nested": "dict"}})
    with pytest.raises(ValueError, match="unknown user event"):
        connect(runtime, scim2_server).plan(alice("x"), "exploded", False)


def test_missing_attribute_is_reported_without_sending(runtime, scim2_server):
    c = connect(runtime, scim2_server)
    with pytest.raises(ProvisioningError) as e:
        c.provision(CmsUser("nobody", {"mail": "nobody@example.com"}), "created")
    assert e.value.case == "missing-attribute"
    assert e.value.user_id == "nobody" and e.value.attribute


def test_secrets_never_reach_the_log_or_repr(runtime, scim2_server, caplog):
    c = Connector.open(runtime, {"base_url": scim2_server.base_url, "token": scim2_server.token},
                       logger=logging.getLogger("scim-test"))
    with caplog.at_level(1, logger="scim-test"):
        c.provision(alice(unique("quiet")), "created")
    assert caplog.records, "the component logged"
    assert scim2_server.token not in caplog.text
    assert scim2_server.token not in repr(c)
    c.logger.info(f"a line naming {scim2_server.token}")
    assert scim2_server.token not in caplog.text
