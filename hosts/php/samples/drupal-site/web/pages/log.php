<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

use ScimProvisioner\GuestTrapException;
use ScimProvisioner\ProvisioningException;

/** @var Admin $admin */
$site = $admin->site();
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST' && ($_POST['action'] ?? '') === 'retry') {
    try {
        $delivery = $site->retryEvent((int) ($_POST['seq'] ?? 0));
        flash(str_starts_with($delivery, 'failed') ? 'error' : 'success', 'Retried: ' . $admin->redact($delivery));
    } catch (\InvalidArgumentException|ProvisioningException|GuestTrapException $x) {
        flash('error', 'Retry failed: ' . $admin->redact($x->getMessage()));
    }
    redirect('/log');
}
$failures = !empty($_GET['failures']);
$per = 50;
$total = $site->countLog($failures);
$pageNo = max(1, min((int) ($_GET['page'] ?? 1), max(1, (int) ceil($total / $per))));

$queued = '';
foreach ($site->db->query('SELECT o.seq, o.user_id, o.event, o.attempts, o.next_attempt_at, o.last_error, o.parked, u.name FROM outbox o LEFT JOIN users u ON u.id = CAST(o.user_id AS INTEGER) ORDER BY o.seq LIMIT 200')->fetchAll(\PDO::FETCH_ASSOC) as $o) {
    $name = $o['name'] ?? json_decode((string) ($site->db->query('SELECT user_json FROM outbox WHERE seq = ' . (int) $o['seq'])->fetchColumn()), true)['name'] ?? $o['user_id'];
    $queued .= '<tr class="' . ($o['parked'] ? 'parked' : 'queued') . '" data-user="' . e($name) . '"><td>' . e($name) . '</td><td>' . e($o['event']) . '</td><td>' . (int) $o['attempts'] . '</td>'
        . '<td>' . ($o['parked'] ? '<span class="badge error">parked</span>' : 'next at ' . e(gmdate('H:i:s', (int) $o['next_attempt_at'])) . ' UTC') . '</td>'
        . '<td>' . e($admin->redact((string) $o['last_error'])) . '</td><td><form method="post" class="inline">' . csrf_field()
        . '<input type="hidden" name="action" value="retry"><input type="hidden" name="seq" value="' . (int) $o['seq'] . '"><button class="small" data-action="retry" title="Sends this user as the site holds them now, not as they were when the change was queued">Retry</button></form></td></tr>';
}
$rows = '';
foreach ($site->logPage(($pageNo - 1) * $per, $per, $failures) as $l) {
    $rows .= '<tr class="' . ($l['outcome'] === 'failed' ? 'failed' : 'ok') . '" data-user="' . e($l['name'] ?? '') . '"><td>' . e($l['at']) . '</td>'
        . '<td>' . e($l['user_id'] === '' ? '—' : ($l['name'] ?? "#{$l['user_id']} (deleted)")) . '</td><td>' . e($l['operation']) . '</td>'
        . '<td class="outcome">' . e($l['outcome']) . '</td><td class="status">' . e($l['http_status'] ?? '') . '</td>'
        . '<td class="reason">' . e($admin->redact((string) ($l['error'] ?? ''))) . '</td><td>' . (int) $l['duration_ms'] . ' ms</td></tr>';
}
page('Provisioning log', ($queued !== '' ? '<h2>Queued and parked changes</h2><p class="hint" id="retry-help">A parked change waits for you. <strong>Retry</strong> replaces the user\'s queued changes with one that sends the user as the site holds them now (or their deletion, if they are gone), so a retry never writes old values over newer ones.</p><table class="grid" id="outbox"><thead><tr><th>User</th><th>Change</th><th>Attempts</th><th>State</th><th>Reason</th><th></th></tr></thead><tbody>' . $queued . '</tbody></table>' : '<p id="outbox-empty">No queued or parked changes.</p>')
    . '<h2>Log</h2><p><a href="/log"' . ($failures ? '' : ' class="current"') . ' id="filter-all">All</a> · <a href="/log?failures=1" id="filter-failures"' . ($failures ? ' class="current"' : '') . '>Failures only</a></p>'
    . pager($failures ? '/log?failures=1&' : '/log?', $pageNo, $per, $total)
    . '<table class="grid" id="log"><thead><tr><th>When (UTC)</th><th>User</th><th>Operation</th><th>Result</th><th>HTTP status</th><th>Server\'s reason</th><th>Time</th></tr></thead><tbody>' . $rows . '</tbody></table>');
