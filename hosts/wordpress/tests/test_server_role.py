"""The server role: an identity provider manages WordPress users at /wp-json/scim/v2, under
Apache + mod_php, over plain HTTP. (scim2-tester and scim-sanity: test_conformance.py.)"""

from __future__ import annotations

import json
import urllib.parse

import pytest

from harness import HttpClient, MariaDB, WordPressSite, scim_request
from plugin_calls import PLUGIN, call

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(scope="module")
def server_site(wordpress: WordPressSite) -> tuple[WordPressSite, str]:
    token = call(wordpress, f"{PLUGIN}->server()->rotateToken()")
    return wordpress, token


def new_user(user_name: str, **extra) -> dict:
    return {"schemas": [USER_SCHEMA], "userName": user_name,
            "name": {"givenName": user_name.capitalize(), "familyName": "Test"},
            "emails": [{"value": f"{user_name}@example.test", "type": "work", "primary": True}], **extra}


def test_a_user_created_with_a_password_logs_in_and_the_password_is_not_stored(server_site, mariadb: MariaDB):
    site, token = server_site
    password = "Gr4ce-H0pper-" + "pw" * 6
    status, body = site.scim("POST", "/Users", token, new_user("grace", password=password))
    assert status == 201, body
    assert "password" not in body
    assert body["userName"] == "grace" and body["meta"]["location"].endswith("/Users/" + body["id"])
    user_id = call(site, "username_exists('grace')")
    assert isinstance(user_id, int)
    assert call(site, f"get_userdata({user_id})->first_name") == "Grace"
    assert call(site, f"get_userdata({user_id})->roles") == ["subscriber"]

    session = site.login("grace", password)  # wp-login.php's form; raises when refused
    assert session.cookie("wordpress_logged_in_") is not None
    status, again = site.scim("GET", "/Users/" + body["id"], token)
    assert status == 200 and "password" not in again

    dump = mariadb.dump(site.db_name)
    assert "grace@example.test" in dump  # the dump is the site's data
    assert password not in dump
    assert password not in site.log_text()


def test_only_the_bearer_token_opens_the_routes(server_site):
    site, token = server_site
    assert site.scim("GET", "/Users", None)[0] == 401
    status, body = site.scim("GET", "/Users", "wrong-" + token)
    assert status == 401 and body["schemas"] == [ERROR_SCHEMA]
    assert site.scim("GET", "/Users", token)[0] == 200
    # The ?rest_route= form (no pretty permalinks) is the same API.
    url = site.url + "/?rest_route=" + urllib.parse.quote("/scim/v2/ServiceProviderConfig")
    assert scim_request("GET", url, token)[0] == 200
    assert scim_request("GET", url, None)[0] == 401


def test_a_subscribers_cookie_and_nonce_get_401(server_site):
    site, token = server_site
    site.create_user("sub1", role="subscriber", password="Sub-pass-123456")
    session = site.login("sub1", "Sub-pass-123456")
    nonce = session.get("/wp-admin/admin-ajax.php?action=rest-nonce").text.strip()
    assert nonce and nonce != "0"
    # The same cookie and nonce do open WordPress's own API as that user.
    me = session.get("/wp-json/wp/v2/users/me", headers={"X-WP-Nonce": nonce})
    assert me.status == 200 and me.json()["slug"] == "sub1"
    for headers in ({"X-WP-Nonce": nonce}, {}, {"X-WP-Nonce": "forged"}):
        resp = session.get("/wp-json/scim/v2/Users", headers=headers)
        assert resp.status == 401, (headers, resp.text[:300])
        assert resp.json()["schemas"] == [ERROR_SCHEMA]


def test_scim_json_goes_out_as_the_component_wrote_it(server_site):
    site, token = server_site
    resp = HttpClient(site.url).get("/wp-json/scim/v2/ServiceProviderConfig",
                                    headers={"Authorization": "Bearer " + token})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/scim+json")
    doc = json.loads(resp.body)
    assert doc["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    status, body = site.scim("GET", "/NoSuchThing", token)
    assert status == 404 and body["schemas"] == [ERROR_SCHEMA]


def test_uniqueness_versions_and_deactivation(server_site):
    site, token = server_site
    status, body = site.scim("POST", "/Users", token, new_user("heidi"))
    assert status == 201
    heidi = body["id"]
    status, body = site.scim("POST", "/Users", token, new_user("HEIDI"))
    assert status == 409 and body.get("scimType") == "uniqueness"
    # A login WordPress already has (the administrator) is taken too: 409 uniqueness, as
    # the PHP library's and the Rust host's directories answer, and nothing is left behind.
    users_before = call(site, "count_users()['total_users']")
    status, body = site.scim("POST", "/Users", token, new_user(site.admin_user.upper()))
    assert status == 409 and body.get("scimType") == "uniqueness", body
    assert call(site, "count_users()['total_users']") == users_before

    url = f"{site.scim_base}/Users/{heidi}"
    status, current = site.scim("GET", f"/Users/{heidi}", token)
    version = current["meta"]["version"]
    stale = HttpClient(url).request("PUT", url, new_user("heidi", displayName="H"), headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/scim+json", "If-Match": 'W/"999"'})
    assert stale.status == 412
    fresh = HttpClient(url).request("PUT", url, new_user("heidi", displayName="Heidi K"), headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/scim+json", "If-Match": version})
    assert fresh.status == 200, fresh.text
    user_id = call(site, "username_exists('heidi')")
    assert call(site, f"get_userdata({user_id})->display_name") == "Heidi K"
    # Replaced onto the administrator's login: refused the same way, heidi kept as she was.
    status, body = site.scim("PUT", f"/Users/{heidi}", token, new_user(site.admin_user, displayName="Taken"))
    assert status == 409 and body.get("scimType") == "uniqueness", body
    assert call(site, "username_exists('heidi')") == user_id
    assert call(site, f"get_userdata({user_id})->display_name") == "Heidi K"

    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert site.scim("PATCH", f"/Users/{heidi}", token, patch)[0] == 200
    assert call(site, f"get_userdata({user_id})->roles") == []  # inactive: no role on the site
    patch["Operations"][0]["value"] = True
    assert site.scim("PATCH", f"/Users/{heidi}", token, patch)[0] == 200
    assert call(site, f"get_userdata({user_id})->roles") == ["subscriber"]

    # Roles from the identity provider: an existing, non-administrative role is given; administrator never.
    status, body = site.scim("POST", "/Users", token, new_user("ivan", roles=[{"value": "editor"}, {"value": "administrator"}]))
    assert status == 201
    assert call(site, "get_userdata(username_exists('ivan'))->roles") == ["editor"]


def test_groups_are_the_plugins_own_and_follow_deleted_users(server_site):
    site, token = server_site
    status, user = site.scim("POST", "/Users", token, new_user("judy"))
    assert status == 201
    status, group = site.scim("POST", "/Groups", token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff",
        "members": [{"value": user["id"]}]})
    assert status == 201, group
    roles_before = call(site, "array_keys(wp_roles()->roles)")
    assert "Staff" not in roles_before and "staff" not in roles_before
    status, found = site.scim("GET", "/Groups?filter=" + urllib.parse.quote(f'members[value eq "{user["id"]}"]'), token)
    assert status == 200 and found["totalResults"] == 1
    status, read = site.scim("GET", f"/Users/{user['id']}", token)
    assert [g["value"] for g in read.get("groups", [])] == [group["id"]]

    assert site.scim("DELETE", f"/Users/{user['id']}", token)[0] == 204
    assert call(site, "username_exists('judy')") is False
    status, group = site.scim("GET", f"/Groups/{group['id']}", token)
    assert status == 200 and not group.get("members")
    assert site.scim("GET", f"/Users/{user['id']}", token)[0] == 404


def test_a_password_changed_over_scim_replaces_the_old_one(server_site, mariadb: MariaDB):
    site, token = server_site
    first, second = "Kim-first-" + "p" * 12, "Kim-second-" + "q" * 12
    status, user = site.scim("POST", "/Users", token, new_user("kim", password=first))
    assert status == 201
    site.login("kim", first)
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "path": "password", "value": second}]}
    status, body = site.scim("PATCH", f"/Users/{user['id']}", token, patch)
    assert status == 200 and "password" not in body
    site.login("kim", second)
    with pytest.raises(Exception):
        site.login("kim", first)
    dump = mariadb.dump(site.db_name)
    assert first not in dump and second not in dump
