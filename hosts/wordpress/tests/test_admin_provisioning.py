"""The client role driven through wp-admin in a real browser (headless Debian chromium,
Selenium) on a WordPress served by Apache + mod_php, each result read back from a real
scim2-server over plain HTTP: the attribute mapping and its preview; a user created in
user-new.php, edited, left without a role (inactive), given a role back and deleted; the Users
list's "Provision now"; Sync now with its plan and confirmation; Retry from the log."""

from __future__ import annotations

import json

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser.fixtures import admin, chromium, peer  # noqa: F401 - pytest fixtures, used by name
from browser.fixtures import client_settings, configure, wait_remote
from browser.wpadmin import WpAdmin
from harness import free_port

ALL_OPERATIONS = {"create": True, "update": True, "deactivate": True, "delete": True}


def user_id(site, login: str) -> int:
    return int(site.php_json(f"get_user_by('login', {json.dumps(login)})->ID"))


def provision_now(a: WpAdmin, uid: int) -> str:
    """The Users list's row action (a nonce'd link, followed as a click would)."""
    a.go("/wp-admin/users.php")
    href = a.d.find_element(By.CSS_SELECTOR, f"#user-{uid} a.scim-provision-now").get_attribute("href")
    a.d.get(href)
    a.wait().until(lambda d: "users.php" in d.current_url and d.execute_script("return document.readyState") == "complete")
    return a.notice_text("provision-now")


def test_a_mapping_with_its_preview(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=False, mapping="")
    uid = site.create_user("mara", role="editor", first_name="Mara", last_name="Map")
    site.php(f"update_user_meta({uid}, 'job_title', 'Engineer');")

    a.tab("mapping")
    rows = a.d.find_elements(By.CSS_SELECTOR, "#scim-rules tbody tr")
    new = rows[-1]
    new.find_element(By.CSS_SELECTOR, 'input[name$="[target]"]').send_keys("title")
    Select(new.find_element(By.CSS_SELECTOR, 'select[name$="[kind]"]')).select_by_value("source")
    new.find_element(By.CSS_SELECTOR, 'input[name$="[value]"]').send_keys("job_title")
    Select(a.d.find_element(By.ID, "scim-preview-user")).select_by_visible_text("mara")
    a.click("scim-preview-button")
    payload = json.loads(a.text("#scim-preview-json"))
    assert payload["userName"] == "mara" and payload["title"] == "Engineer", payload
    assert payload["name"]["givenName"] == "Mara"
    assert client_settings(site)["mapping"] == ""  # a preview saves nothing
    a.shot("mapping-preview")

    # The previewed rules are still in the form: save them.
    a.click("scim-save-mapping")
    assert "saved" in a.notice_text("mapping-saved")
    rules = json.loads(client_settings(site)["mapping"])
    assert {"target": "title", "source": "job_title"} in rules

    # A rule the component rejects is marked on its row, and nothing is saved.
    new = a.d.find_elements(By.CSS_SELECTOR, "#scim-rules tbody tr")[-1]
    new.find_element(By.CSS_SELECTOR, 'input[name$="[target]"]').send_keys("noSuchAttribute")
    new.find_element(By.CSS_SELECTOR, 'input[name$="[value]"]').send_keys("user_email")
    a.click("scim-save-mapping")
    assert a.has("setting-error-scim-mapping-invalid")
    marked = a.d.find_elements(By.CSS_SELECTOR, ".scim-rule-error")
    assert marked and "noSuchAttribute" in a.d.find_element(By.CSS_SELECTOR, "tr.scim-invalid").get_attribute("innerHTML")
    assert json.loads(client_settings(site)["mapping"]) == rules

    assert provision_now(a, uid).startswith("mara:")
    remote = peer.user_by_name("mara")
    assert remote is not None and remote["title"] == "Engineer", remote
    configure(site, mapping="")


def test_a_user_made_changed_deactivated_reactivated_and_deleted_in_wp_admin(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=True, operations=ALL_OPERATIONS,
              deprovision="deactivate", scope_roles=[])
    # Created in user-new.php: arrives on its own (automatic).
    a.go("/wp-admin/user-new.php")
    a.fill("user_login", "lena")
    a.fill("email", "lena@example.test")
    a.fill("first_name", "Lena")
    a.fill("last_name", "Lifecycle")
    a.d.execute_script("document.getElementById('pass1').value = arguments[0];"
                       "document.getElementById('pass1').dispatchEvent(new Event('input'))", "Lena-Strong-Pass-8274!")
    if a.d.find_elements(By.CSS_SELECTOR, ".pw-weak input[type=checkbox]"):
        box = a.d.find_element(By.CSS_SELECTOR, ".pw-weak input[type=checkbox]")
        if box.is_displayed() and not box.is_selected():
            box.click()
    a.select("role", "author")
    a.click("createusersub")
    remote = wait_remote(peer, "lena", "created", lambda u: u is not None)
    assert remote["name"]["givenName"] == "Lena" and remote["active"] is True
    uid = user_id(site, "lena")

    # Edited in user-edit.php.
    a.go(f"/wp-admin/user-edit.php?user_id={uid}")
    a.fill("first_name", "Lenora")
    a.click("submit")
    wait_remote(peer, "lena", "given name changed", lambda u: u and u["name"]["givenName"] == "Lenora")

    # No role on the site: inactive on the server.
    a.go(f"/wp-admin/user-edit.php?user_id={uid}")
    a.select("role", "")
    a.click("submit")
    wait_remote(peer, "lena", "deactivated", lambda u: u and u.get("active") is False)
    a.go("/wp-admin/users.php")
    a.shot("users-list")

    # A role again: active again.
    a.go(f"/wp-admin/user-edit.php?user_id={uid}")
    a.select("role", "author")
    a.click("submit")
    wait_remote(peer, "lena", "reactivated", lambda u: u and u.get("active") is True)

    # The deprovision action set to delete on the Provisioning tab, then the user deleted.
    a.tab("provisioning")
    a.check("scim-op-delete")
    a.check("scim-deprovision-delete")
    a.click("scim-save-provisioning")
    assert a.has("setting-error-scim-provisioning-saved")
    assert client_settings(site)["deprovision"] == "delete"
    a.shot("provisioning")
    a.go("/wp-admin/users.php")
    href = a.d.find_element(By.CSS_SELECTOR, f"#user-{uid} .row-actions .delete a").get_attribute("href")
    a.d.get(href)
    a.wait().until(lambda d: d.find_elements(By.ID, "submit"))
    a.click("submit")
    wait_remote(peer, "lena", "deleted", lambda u: u is None)


def test_provision_now_from_the_users_list(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=False, scope_roles=[],
              operations=ALL_OPERATIONS, deprovision="deactivate")
    uid = site.create_user("pat_now", role="contributor", first_name="Pat")
    assert peer.user_by_name("pat_now") is None  # not automatic: nothing was sent
    message = provision_now(a, uid)
    assert message.startswith("pat_now:") and a.notice("provision-now").get_attribute("class").find("notice-success") >= 0, message
    remote = peer.user_by_name("pat_now")
    assert remote is not None and remote["name"]["givenName"] == "Pat"
    cell = a.text(f"#user-{uid} td.column-scim_provisioner")
    assert cell.startswith("provisioned"), cell


def test_sync_now_shows_the_plan_and_sends_only_when_confirmed(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=False, scope_roles=[],
              operations=ALL_OPERATIONS, deprovision="deactivate", deletion_threshold=10)
    names = ["sync_ann", "sync_ben", "sync_cid"]
    for name in names:
        site.create_user(name, role="subscriber")
    a.tab("provisioning")
    a.click("scim-sync-now")
    plan = {r.get_attribute("data-user"): r.find_element(By.CSS_SELECTOR, ".scim-plan-action").text
            for r in a.d.find_elements(By.CSS_SELECTOR, "#scim-plan-rows tbody tr")}
    for name in names:
        assert plan.get(name) == "create", plan
    assert all(peer.user_by_name(name) is None for name in names)  # a plan sends nothing
    a.shot("sync-plan", docs="wordpress-sync-plan.png")
    a.click("scim-confirm-sync")
    result = a.notice("sync-result")
    assert "notice-success" in result.get_attribute("class"), result.text
    for name in names:
        assert peer.user_by_name(name) is not None, name


def test_sync_now_stops_at_the_deletion_threshold_unless_allowed(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=False, scope_roles=[],
              operations=ALL_OPERATIONS, deprovision="deactivate", deletion_threshold=10)
    names = ["gone_una", "gone_vic"]
    ids = [site.create_user(name, role="subscriber") for name in names]
    for uid in ids:
        provision_now(a, uid)
    configure(site, deletion_threshold=1)
    try:
        for uid in ids:  # no role on the site: inactive, to be deactivated by the next sync
            site.php(f"(new WP_User({uid}))->set_role('');")

        a.tab("provisioning")
        a.click("scim-sync-now")
        plan = {r.get_attribute("data-user"): r.find_element(By.CSS_SELECTOR, ".scim-plan-action").text
                for r in a.d.find_elements(By.CSS_SELECTOR, "#scim-plan-rows tbody tr")}
        assert plan.get("gone_una") == "deactivate" and plan.get("gone_vic") == "deactivate", plan
        a.click("scim-confirm-sync")  # without allowing more than the threshold: nothing is sent
        refused = a.notice("sync-result")
        remote_active = {name: peer.user_by_name(name)["active"] for name in names}
        assert remote_active == {name: True for name in names}, (remote_active, refused.text)
        assert "notice-error" in refused.get_attribute("class"), refused.text

        a.click("scim-sync-now")
        a.check("scim-allow-deletes")
        a.click("scim-confirm-sync")
        assert "notice-success" in a.notice("sync-result").get_attribute("class"), a.notice_text("sync-result")
        assert all(peer.user_by_name(name)["active"] is False for name in names)
    finally:
        configure(site, deletion_threshold=10)


def test_retry_from_the_log_after_the_server_was_unreachable(admin: WpAdmin, peer):
    a, site = admin, admin.site
    unreachable = f"http://127.0.0.1:{free_port()}/v2"  # nothing listens there
    configure(site, base_url=unreachable, auth="bearer", token=peer.token, automatic=False, scope_roles=[],
              operations=ALL_OPERATIONS, deprovision="deactivate")
    uid = site.create_user("rory_retry", role="subscriber")
    message = provision_now(a, uid)
    assert "notice-error" in a.notice("provision-now").get_attribute("class"), message

    a.tab("log", failures="1")
    row = a.d.find_element(By.CSS_SELECTOR, '#scim-log tr[data-user="rory_retry"]')
    assert row.find_element(By.CSS_SELECTOR, ".scim-outcome").text == "failed"
    assert a.has("scim-retry-help")
    a.shot("log-failure")
    retry = row.find_element(By.CSS_SELECTOR, "a.scim-retry").get_attribute("href")

    configure(site, base_url=peer.base_url, token=peer.token)  # the server is back
    a.d.get(retry)
    a.wait().until(lambda d: d.find_elements(By.ID, "scim-log"))
    assert "notice-success" in a.notice("retry").get_attribute("class"), a.notice_text("retry")
    assert peer.user_by_name("rory_retry") is not None
    newest = a.d.find_element(By.CSS_SELECTOR, '#scim-log tr[data-user="rory_retry"]')
    assert newest.find_element(By.CSS_SELECTOR, ".scim-outcome").text != "failed"


def test_markup_in_user_fields_is_shown_as_text(admin: WpAdmin, peer):
    a, site = admin, admin.site
    # WordPress strips tags from its own user fields; user meta keeps what it is given.
    rules = site.php_json("\\ScimProvisioner\\WordPress\\Settings::defaultMapping()") + [{"target": "title", "source": "job_title"}]
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=False, scope_roles=[],
              operations=ALL_OPERATIONS, deprovision="deactivate", mapping=json.dumps(rules))
    markup = '</pre><img src=x onerror="window.__scimXss=1"><b>bold</b>'
    uid = site.create_user("xss_probe", role="subscriber")
    site.php(f"update_user_meta({uid}, 'job_title', {json.dumps(markup)});")
    try:
        provision_now(a, uid)
        assert peer.user_by_name("xss_probe")["title"] == markup
        a.tab("mapping")
        assert not a.d.find_elements(By.CSS_SELECTOR, 'datalist img, #scim-rules img')
        Select(a.d.find_element(By.ID, "scim-preview-user")).select_by_visible_text("xss_probe")
        a.click("scim-preview-button")
        assert json.loads(a.text("#scim-preview-json"))["title"] == markup
        assert not a.d.find_elements(By.CSS_SELECTOR, "#scim-preview img, #scim-preview b")
        for path in ("/wp-admin/users.php", "/wp-admin/options-general.php?page=scim-provisioner&tab=log"):
            a.go(path)
            assert not a.d.find_elements(By.CSS_SELECTOR, 'img[src="x"]'), path
        assert a.d.execute_script("return window.__scimXss === undefined")
    finally:
        configure(site, mapping="")
