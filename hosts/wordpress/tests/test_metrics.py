"""Live metrics in WordPress (issue 31, part 3): the counters kept in the plugin's table move
after a provisioning, the dashboard widget shows them, the Prometheus route answers only the
metrics token (never the SCIM token, a wrong one or none), and "Sync now"'s progress route
reports the sync to administrators only."""

from __future__ import annotations

import re

import pytest

from harness import HttpClient, Scim2Server, WordPressSite, form, form_fields
from plugin_calls import PLUGIN, call, configure_client, create_users_quietly

METRICS = "\\ScimProvisioner\\WordPress\\Metrics"
ROUTE = "/wp-json/scim-provisioner/v1/metrics"


@pytest.fixture()
def client_site(wp_site, scim2_server: Scim2Server) -> WordPressSite:
    site = wp_site("metrics")
    configure_client(site, scim2_server, automatic=False)
    return site


def scrape(site: WordPressSite, token: str | None) -> tuple[int, str, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    resp = HttpClient(site.url).get(ROUTE, headers=headers)
    return resp.status, resp.text, resp.headers


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in the text format; 0 when it is not there yet."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{want}}}" if want else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_counters_move_and_the_route_wants_the_metrics_token(client_site: WordPressSite, scim2_server: Scim2Server):
    site = client_site
    # No token made yet: nothing opens the route.
    assert scrape(site, None)[0] == 401
    assert scrape(site, "anything")[0] == 401
    token = call(site, f"{METRICS}::rotateToken()")
    scim_token = call(site, f"{PLUGIN}->server()->rotateToken()")
    assert scrape(site, None)[0] == 401
    assert scrape(site, "wrong-" + token)[0] == 401
    assert scrape(site, scim_token)[0] == 401, "the SCIM token must not read the metrics"
    status, before, headers = scrape(site, token)
    assert status == 200, before
    assert headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"), headers
    assert "# TYPE scim_users_provisioned_total counter" in before
    assert sample(before, "scim_users_provisioned_total", action="created", result="ok") == 0

    # Five users (and the administrator), sent by a sync: the counters move by as many as
    # the sync created, one sync, some requests.
    create_users_quietly(site, "metric", 5)
    result = call(site, f"{PLUGIN}->client()->runSync(false)")
    created = result["counts"]["created"]
    assert result["ok"] and created >= 5, result
    status, after, _ = scrape(site, token)
    assert status == 200
    assert sample(after, "scim_users_provisioned_total", action="created", result="ok") == created, after
    assert sample(after, "scim_syncs_total", result="ok") == 1
    target = scim2_server.base_url.split("/v2")[0]
    assert sample(after, "scim_client_requests_total", target=target) >= 1, after
    assert sample(after, "scim_client_concurrency", target=target) >= 1, after
    assert sample(after, "scim_outbox_depth") == 0 and sample(after, "scim_outbox_parked") == 0

    # The server role's requests, by route and status, with their latency; a refused one too.
    assert site.scim("GET", "/Users", scim_token)[0] == 200
    assert site.scim("GET", "/Users", None)[0] == 401
    _, served, _ = scrape(site, token)
    assert sample(served, "scim_server_requests_total", method="GET", route="/Users", status="200") == 1, served
    assert sample(served, "scim_server_requests_total", method="GET", route="/Users", status="401") == 1, served
    assert sample(served, "scim_server_request_duration_seconds_count", route="/Users") == 1, served
    assert sample(served, "scim_server_request_duration_seconds_bucket", route="/Users", le="+Inf") == 1, served

    # Nothing secret in what a scraper reads.
    for secret in (token, scim_token, scim2_server.token, "metric00000@"):
        assert secret not in served


def test_the_dashboard_widget_shows_the_counters_and_rotates_the_token(client_site: WordPressSite):
    site = client_site
    old = call(site, f"{METRICS}::rotateToken()")
    create_users_quietly(site, "widget", 2)
    result = call(site, f"{PLUGIN}->client()->runSync(false)")
    created = result["counts"]["created"]
    assert result["ok"] and created >= 2, result

    admin = site.login(site.admin_user, site.admin_password)
    page = admin.get("/wp-admin/index.php")
    assert page.status == 200
    assert 'id="scim_provisioner_metrics"' in page.text, "the widget is on the dashboard"
    row = re.search(r"<td>users created ok</td><td>([0-9.]+)</td>", page.text)
    assert row and float(row.group(1)) == created, page.text[-4000:]
    assert f"{created} of {created} users" in page.text

    # Rotating from the widget: the new token is shown once; the old one stops at once.
    fields = form_fields(page.text, "scim-metrics-token-form")
    rotated = admin.post("/wp-admin/index.php", form(**fields, scim_metrics_token="1"))
    assert rotated.status == 200
    new = re.search(r'id="scim-metrics-token" value="([0-9a-f]{64})"', rotated.text)
    assert new, rotated.text[-3000:]
    assert scrape(site, old)[0] == 401
    assert scrape(site, new.group(1))[0] == 200
    assert new.group(1) not in admin.get("/wp-admin/index.php").text, "shown once"
    # A subscriber sees no widget and cannot rotate.
    site.create_user("reader", role="subscriber", password="Reader-pass-123456")
    reader = site.login("reader", "Reader-pass-123456")
    assert "scim_provisioner_metrics" not in reader.get("/wp-admin/index.php", follow=True).text


def test_sync_progress_is_for_administrators(client_site: WordPressSite):
    site = client_site
    create_users_quietly(site, "progress", 3)
    result = call(site, f"{PLUGIN}->client()->runSync(false)")
    sent = result["counts"]["created"]
    assert result["ok"] and sent >= 3, result
    progress = call(site, "\\ScimProvisioner\\WordPress\\SyncProgress::read()")
    assert progress["running"] is False
    assert (progress["total"], progress["done"], progress["failed"], progress["remaining"]) == (sent, sent, 0, 0)

    # The route, as the "Sync now" screen polls it: cookie and the REST nonce the plan page carries.
    url = "/wp-json/scim-provisioner/v1/sync-progress"
    assert HttpClient(site.url).get(url).status == 401
    admin = site.login(site.admin_user, site.admin_password)
    tab = "/wp-admin/options-general.php?page=scim-provisioner&tab=provisioning"
    fields = form_fields(admin.get(tab).text, "scim-plan-form")
    # The plan is shown once, on the page the plan's redirect lands on.
    plan_page = admin.post("/wp-admin/admin-post.php", form(**fields), follow=True).text
    assert 'id="scim-sync-progress"' in plan_page
    nonce = re.search(r'"nonce":"([0-9a-f]+)"', plan_page)
    assert nonce, plan_page[-3000:]
    answer = admin.get(url, headers={"X-WP-Nonce": nonce.group(1)})
    assert answer.status == 200, answer.text
    body = answer.json()
    assert (body["total"], body["done"], body["remaining"], body["failed"]) == (sent, sent, 0, 0)
    # A subscriber's cookie and nonce are refused.
    site.create_user("sub", role="subscriber", password="Sub-pass-123456")
    sub = site.login("sub", "Sub-pass-123456")
    assert sub.get(url).status in (401, 403)
