"""The client role: WordPress users provisioned to a real scim2-server, through WordPress's own
functions and requests; every result read back from scim2-server over plain HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.parse
from typing import Iterator

import pytest

from harness import WEB_USER, Scim2Server, WordPressSite, as_user, form, wait_for
from plugin_calls import PLUGIN, call, configure_client, link_of, php_value, save_settings, users_by_name


@pytest.fixture()
def client_site(wp_site, scim2_server: Scim2Server) -> WordPressSite:
    site = wp_site("client")
    configure_client(site, scim2_server, automatic=True)
    return site


def test_create_edit_inactive_back_and_delete_reach_the_server(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    # Each site.php run is a request of its own: automatic mode delivers at its shutdown.
    user_id = site.create_user("alice", email="Alice@Example.test", role="author", first_name="Alice", last_name="Liddell")
    remote = scim2_server.user_by_name("alice")
    assert remote is not None, "created user not on the server"
    assert remote["emails"][0]["value"] == "alice@example.test"
    assert remote["name"]["givenName"] == "Alice"
    assert remote["externalId"] == str(user_id)
    assert remote["active"] is True
    assert link_of(site, user_id)["remote_id"] == remote["id"]

    site.php(f"wp_update_user(['ID' => {user_id}, 'first_name' => 'Alicia', 'display_name' => 'Alicia L']);")
    remote = scim2_server.user_by_name("alice")
    assert remote["name"]["givenName"] == "Alicia"
    assert remote["displayName"] == "Alicia L"

    # No role on the site: inactive, and the default deprovision action (deactivate) applies.
    site.php(f"(new WP_User({user_id}))->set_role('');")
    assert scim2_server.user_by_name("alice")["active"] is False

    site.php(f"(new WP_User({user_id}))->set_role('editor');")
    remote = scim2_server.user_by_name("alice")
    assert remote["active"] is True
    assert [r["value"] for r in remote.get("roles", [])] == ["editor"]

    # Delete with deprovision = delete: the remote user goes too.
    outbox_users = f"SELECT COUNT(*) FROM wp_scim_outbox_users WHERE user_id = {user_id}"
    assert site.mariadb.query(site.db_name, outbox_users) == [["1"]]
    save_settings(site, deprovision="delete", operations={"create": True, "update": True, "deactivate": True, "delete": True})
    site.php(f"require_once ABSPATH . 'wp-admin/includes/user.php'; wp_delete_user({user_id});")
    assert scim2_server.user_by_name("alice") is None
    # The deleted user's last event delivered: their row in scim_outbox_users went with it.
    assert site.mariadb.query(site.db_name, outbox_users) == [["0"]]
    log = call(site, f"{PLUGIN}->log()->page(0, 20, false)")
    assert [row["outcome"] for row in log if row["user_id"] == user_id][:1] == ["deleted"]
    assert call(site, f"{PLUGIN}->outbox()->counts()") == {"pending": 0, "parked": 0, "claimed": 0}


def test_a_deleted_user_is_deactivated_by_default(client_site: WordPressSite, scim2_server: Scim2Server):
    user_id = client_site.create_user("bob", role="subscriber")
    assert scim2_server.user_by_name("bob")["active"] is True
    client_site.php(f"require_once ABSPATH . 'wp-admin/includes/user.php'; wp_delete_user({user_id});")
    assert scim2_server.user_by_name("bob")["active"] is False


def test_provision_now_with_automatic_off(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    save_settings(site, automatic=False)
    user_id = site.create_user("carol", role="subscriber")
    assert scim2_server.user_by_name("carol") is None
    assert call(site, f"{PLUGIN}->client()->userState({user_id})")["state"] == "pending"

    result = call(site, f"{PLUGIN}->client()->provisionNow({user_id})")
    assert result["ok"] is True, result
    assert result["action"] in ("created", "adopted")
    remote = scim2_server.user_by_name("carol")
    assert remote is not None
    state = call(site, f"{PLUGIN}->client()->userState({user_id})")
    assert state["state"] == "provisioned" and state["remote_id"] == remote["id"]

    again = call(site, f"{PLUGIN}->client()->provisionNow({user_id})")
    assert again["ok"] is True and again["action"] == "unchanged"
    preview = call(site, f"{PLUGIN}->client()->previewMapping({user_id})")
    assert preview["ok"] is True and preview["payload"]["userName"] == "carol"


def test_a_failed_delivery_is_logged_and_retried(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    save_settings(site, token="not-the-token")
    user_id = site.create_user("dave", role="subscriber")
    assert scim2_server.user_by_name("dave") is None
    failures = call(site, f"{PLUGIN}->log()->page(0, 10, true)")
    row = next(r for r in failures if r["user_id"] == user_id)
    assert row["retryable"] is True and row["status"] == 401
    assert "not-the-token" not in (row["message"] or "")

    save_settings(site, token=scim2_server.token)
    result = call(site, f"{PLUGIN}->client()->retry({row['id']})")
    assert result["ok"] is True, result
    assert scim2_server.user_by_name("dave") is not None


def test_wp_cron_retries_a_failed_delivery_when_its_time_comes(client_site: WordPressSite, scim2_server: Scim2Server,
                                                               mariadb):
    site = client_site
    # A server that is down (nothing listens on the port): a failure worth retrying, with backoff.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    save_settings(site, base_url=f"http://127.0.0.1:{closed_port}/v2", token=scim2_server.token)
    site.create_user("ruth", role="subscriber")
    counts = call(site, f"{PLUGIN}->outbox()->counts()")
    assert counts["pending"] == 1 and counts["parked"] == 0  # failed once, waiting for its retry time
    configure_client(site, scim2_server)
    # The retry time and the five-minute drain job both come due now; a visitor's request runs WP-Cron.
    mariadb.query(site.db_name, "UPDATE wp_scim_outbox SET next_attempt_at = 0")
    site.php("wp_clear_scheduled_hook('scim_provisioner_drain');"
             " wp_schedule_event(time() - 1, 'scim_provisioner_every_five_minutes', 'scim_provisioner_drain');")
    assert site.run_cron().status == 200
    wait_for(lambda: scim2_server.user_by_name("ruth") is not None, "the retried user on scim2-server")
    wait_for(lambda: call(site, f"{PLUGIN}->outbox()->counts()")["pending"] == 0, "the outbox emptied")


def test_a_scheduled_reconcile_through_wp_cron(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    save_settings(site, automatic=False, schedule="hourly")
    ids = [site.create_user(f"cron{i}", role="subscriber") for i in range(3)]
    assert not any(scim2_server.user_by_name(f"cron{i}") for i in range(3))
    # Make the hourly reconcile due now, then let a visitor's request run WP-Cron.
    site.php("$next = wp_next_scheduled('scim_provisioner_reconcile'); if ($next === false) { exit(1); }"
             " wp_unschedule_event($next, 'scim_provisioner_reconcile');"
             " wp_schedule_event(time() - 1, 'hourly', 'scim_provisioner_reconcile');")
    assert site.run_cron().status == 200
    wait_for(lambda: all(scim2_server.user_by_name(f"cron{i}") for i in range(3)), "the cron sync's users on scim2-server")
    for i, user_id in enumerate(ids):
        assert link_of(site, user_id)["remote_id"] == scim2_server.user_by_name(f"cron{i}")["id"]
    wait_for(lambda: any(r["operation"] == "sync" and r["outcome"] == "done" for r in call(site, f"{PLUGIN}->log()->page(0, 50, false)")),
             "the sync's summary in the log")


def test_the_worker_drains_and_reconciles(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    # A site that runs cron from the system: page loads never spawn wp-cron.php (what
    # DISABLE_WP_CRON does), so only the worker runs the jobs.
    mu = site.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "system-cron.php").write_text("<?php remove_action('init', 'wp_cron');\n")
    save_settings(site, automatic=False)
    user_id = site.create_user("erin", role="subscriber")
    out = site.worker("drain")
    assert "1 delivered" in out.stdout, out.stdout
    assert scim2_server.user_by_name("erin") is not None

    # A change made while the plugin could not see it (straight to the database) is found by the sync's fingerprints.
    site.php(f"global $wpdb; $wpdb->update($wpdb->usermeta, ['meta_value' => 'Erina'], ['user_id' => {user_id}, 'meta_key' => 'first_name']);"
             f" clean_user_cache({user_id});")
    out = site.worker("sync")
    assert "1 updated" in out.stdout, out.stdout
    assert scim2_server.user_by_name("erin")["name"]["givenName"] == "Erina"
    out = site.worker("sync")
    assert "0 updated" in out.stdout and "0 failed" in out.stdout, out.stdout

    # `run` (what a system crontab calls): the queue, then the reconcile when WP-Cron says it is due.
    save_settings(site, schedule="hourly")
    out = site.worker("run")
    assert "sync:" not in out.stdout, out.stdout
    site.php(f"global $wpdb; $wpdb->update($wpdb->usermeta, ['meta_value' => 'Erin'], ['user_id' => {user_id}, 'meta_key' => 'first_name']);"
             f" clean_user_cache({user_id});")
    site.php("wp_clear_scheduled_hook('scim_provisioner_reconcile'); wp_schedule_event(time() - 1, 'hourly', 'scim_provisioner_reconcile');")
    out = site.worker("run")
    assert "sync:" in out.stdout and "1 updated" in out.stdout, out.stdout
    assert scim2_server.user_by_name("erin")["name"]["givenName"] == "Erin"
    assert call(site, "wp_next_scheduled('scim_provisioner_reconcile') > time()") is True


def test_a_1000_user_sync(wp_site, scim2_server: Scim2Server):
    site = wp_site("thousand")
    # Users made before the plugin was configured: only the sync can send them.
    site.php("""
for ($i = 0; $i < 1000; $i++) {
    $login = sprintf('bulk%04d', $i);
    $id = wp_insert_user(['user_login' => $login, 'user_email' => $login . '@example.test', 'role' => 'subscriber',
        'first_name' => 'Bulk', 'last_name' => (string) $i, 'user_pass' => 'x']);
    if (is_wp_error($id)) { fwrite(STDERR, $id->get_error_message()); exit(1); }
}""", timeout=1800)
    configure_client(site, scim2_server, automatic=False)
    out = site.worker("sync", timeout=1800)
    assert "1001 created" in out.stdout or ("created" in out.stdout and "0 failed" in out.stdout), out.stdout
    users = users_by_name(scim2_server)
    assert len([n for n in users if n.startswith("bulk")]) == 1000
    assert users["bulk0999"]["name"]["familyName"] == "999"
    out = site.worker("sync", timeout=1800)
    assert "1001 unchanged" in out.stdout, out.stdout


class Blackhole:
    """A TCP listener that accepts connections and never answers: a SCIM server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def still_open(self, conn: socket.socket) -> bool:
        """The peer has not closed: it sent its request and waits for an answer."""
        conn.setblocking(False)
        try:
            data = conn.recv(65536, socket.MSG_PEEK)
            return len(data) > 0
        except BlockingIOError:
            return True
        finally:
            conn.setblocking(True)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture()
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def test_an_admin_save_does_not_wait_for_the_scim_server(wp_site, blackhole: Blackhole):
    """Automatic mode under Apache + mod_php: the wp-admin form's response (302) reaches the
    browser while the plugin is still waiting on a SCIM server that never answers."""
    site = wp_site("hang")
    save_settings(site, base_url=f"http://127.0.0.1:{blackhole.port}/scim/v2", auth="bearer", token="t" * 20,
                  timeout_ms=120000, automatic=True)
    admin = site.login(site.admin_user, site.admin_password)
    page = admin.get("/wp-admin/user-new.php")
    marker = 'name="_wpnonce_create-user" value="'
    nonce = page.text.split(marker, 1)[1].split('"', 1)[0]
    resp = admin.post("/wp-admin/user-new.php", form(**{
        "action": "createuser", "_wpnonce_create-user": nonce, "user_login": "frank", "email": "frank@example.test",
        "first_name": "Frank", "last_name": "", "url": "", "pass1": "Fr4nk-pass-" + "x" * 12, "pass2": "Fr4nk-pass-" + "x" * 12,
        "role": "subscriber", "createuser": "Add New User"}), timeout=100)
    assert resp.status == 302, resp.text[:500]
    assert "users.php" in resp.headers.get("Location", "")
    # The response is complete; the delivery it started is still waiting for the SCIM server.
    wait_for(lambda: len(blackhole.accepted) >= 1, "the delivery's connection to the SCIM server")
    assert blackhole.still_open(blackhole.accepted[0])
    wait_for(lambda: b"\r\n\r\n" in blackhole.accepted[0].recv(65536, socket.MSG_PEEK), "the delivery's request")
    first = blackhole.accepted[0].recv(65536, socket.MSG_PEEK).decode(errors="replace")
    assert first.split(" ")[0] in ("GET", "POST")
    assert "Bearer " + "t" * 20 in first
    assert urllib.parse.urlparse(site.url).netloc not in first.split("\r\n")[0]
    blackhole.close()
    wait_for(lambda: call(site, f"{PLUGIN}->log()->count(true)") >= 1, "the failed delivery in the log")


def test_a_new_origin_clears_the_saved_token(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    assert call(site, f"{PLUGIN}->settings()->all()")["token_saved"] is True
    # Kept encrypted: the database does not hold it as entered.
    assert scim2_server.token not in site.php("echo serialize(get_option('scim_provisioner_client'));")
    save_settings(site, base_url=scim2_server.base_url + "/")  # same origin: kept
    assert call(site, f"{PLUGIN}->settings()->all()")["token_saved"] is True
    save_settings(site, base_url="http://127.0.0.2:9/scim/v2")
    after = call(site, f"{PLUGIN}->settings()->all()")
    assert after["token_saved"] is False and after["token"] == ""


def test_a_mapping_with_a_user_meta_field(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    department = enterprise + ":department"
    rules = call(site, f"{PLUGIN}->settings()->mappingRules()")
    rules.append({"target": department, "source": "department"})
    bad = call(site, f"{PLUGIN}->settings()->save(['mapping' => '[{{\"target\": \"nosuch\", \"source\": \"x\"}}]'])")
    assert "mapping" in bad  # the component refuses it (invalid-config), nothing saved
    save_settings(site, mapping=json.dumps(rules))
    user_id = site.create_user("grace", role="subscriber")
    site.php(f"update_user_meta({user_id}, 'department', 'R&D'); wp_update_user(['ID' => {user_id}]);")
    remote = scim2_server.user_by_name("grace")
    assert remote[enterprise]["department"] == "R&D"
    preview = call(site, f"{PLUGIN}->client()->previewMapping({user_id})")
    assert preview["payload"][enterprise]["department"] == "R&D"
    # A preview with other rules (not saved) leaves the saved mapping alone.
    other = call(site, f"{PLUGIN}->client()->previewMapping({user_id}, {php_value(json.dumps([{'target': 'userName', 'source': 'user_email'}]))})")
    assert other["ok"] is True and other["payload"]["userName"] == "grace@example.test"
    assert call(site, f"{PLUGIN}->settings()->mappingRules()") == rules


def test_without_ffi_changes_are_queued_and_the_scim_routes_answer_503(client_site: WordPressSite, scim2_server: Scim2Server):
    """A PHP that cannot use FFI (here the CLI with ffi.enable=0; under Apache, mod_php or FPM
    without the setting): the site keeps working, users' changes are queued, the admin notice
    says what to add, the SCIM routes answer a SCIM 503; the worker (the CLI's defaults allow
    FFI) delivers the queue."""
    site = client_site
    token = call(site, f"{PLUGIN}->server()->rotateToken()")
    code = f"""<?php
$_SERVER['HTTP_HOST'] = '127.0.0.1:{site.port}';
require '{site.path}/wp-load.php';
$id = wp_insert_user(['user_login' => 'noffi', 'user_email' => 'noffi@example.test', 'role' => 'subscriber', 'user_pass' => 'x']);
$request = new WP_REST_Request('GET', '/scim/v2/Users');
$request->set_header('Authorization', 'Bearer {token}');
$response = rest_do_request($request);
echo json_encode(['id' => $id, 'notices' => {PLUGIN}->notices(), 'status' => $response->get_status(),
    'body' => $response instanceof ScimProvisioner\\WordPress\\RawRestResponse ? json_decode($response->body, true) : null,
    'outbox' => {PLUGIN}->outbox()->counts()]);
"""
    out = subprocess.run(as_user(WEB_USER, ["php", "-d", "ffi.enable=0"]), input=code, capture_output=True, text=True,
                         cwd=site.path, timeout=300)
    assert out.returncode == 0, site.log_text()[-3000:]
    result = json.loads(out.stdout)
    notice = result["notices"][0]["message"]
    assert "php_admin_value ffi.enable 1" in notice and "php_admin_value[ffi.enable] = true" in notice
    assert result["status"] == 503
    assert result["body"]["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert result["outbox"]["pending"] == 1
    assert scim2_server.user_by_name("noffi") is None
    assert "1 delivered" in site.worker("drain").stdout
    assert scim2_server.user_by_name("noffi") is not None


def test_uninstall_removes_the_plugins_data(client_site: WordPressSite, scim2_server: Scim2Server, mariadb):
    site = client_site
    user_id = site.create_user("henry", role="subscriber")
    assert link_of(site, user_id) is not None
    site.php("require_once ABSPATH . 'wp-admin/includes/plugin.php'; deactivate_plugins('scim-provisioner/scim-provisioner.php');"
             " uninstall_plugin('scim-provisioner/scim-provisioner.php');")
    tables = {row[0] for row in mariadb.query(site.db_name, "SHOW TABLES")}
    assert not any("scim" in t for t in tables), tables
    assert mariadb.query(site.db_name, "SELECT COUNT(*) FROM wp_usermeta WHERE meta_key LIKE '\\_scim\\_%'") == [["0"]]
    assert mariadb.query(site.db_name, "SELECT COUNT(*) FROM wp_options WHERE option_name LIKE 'scim\\_provisioner%'") == [["0"]]
    assert call(site, f"get_userdata({user_id})->user_login") == "henry"  # the users stay


def test_the_deletion_threshold_holds_back_queued_deactivations_too(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    ids = [site.create_user(name, role="subscriber") for name in ("tom", "una")]  # automatic: on the server now
    save_settings(site, automatic=False, deletion_threshold=1)
    for user_id in ids:
        site.php(f"(new WP_User({user_id}))->set_role('');")  # inactive, queued
    plan = call(site, f"{PLUGIN}->client()->planSync()")
    assert plan["counts"].get("deactivate") == 2, plan
    refused = call(site, f"{PLUGIN}->client()->runSync(false)")
    assert refused["ok"] is False and "threshold" in refused["message"], refused
    assert all(scim2_server.user_by_name(n)["active"] is True for n in ("tom", "una"))
    assert call(site, f"{PLUGIN}->outbox()->counts()")["pending"] == 2  # still queued, nothing lost
    allowed = call(site, f"{PLUGIN}->client()->runSync(true)")
    assert allowed["ok"] is True and allowed["counts"]["deactivated"] == 2, allowed
    assert all(scim2_server.user_by_name(n)["active"] is False for n in ("tom", "una"))
