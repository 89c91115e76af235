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
$s = $admin->settings();
$errors = [];
$result = '';
$action = $_POST['action'] ?? '';
$form = $s;
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST' && $action === 'save') {
    $ops = [];
    foreach (['create', 'update', 'deactivate', 'delete'] as $op) {
        $ops[$op] = !empty($_POST['op'][$op]);
    }
    $form = array_merge($s, [
        'operations' => $ops,
        'deprovision' => (string) ($_POST['deprovision'] ?? ''),
        'scope_active' => !empty($_POST['scope_active']),
        'automatic' => !empty($_POST['automatic']),
        'schedule' => (string) ($_POST['schedule'] ?? ''),
        'threshold' => trim((string) ($_POST['threshold'] ?? '')),
    ]);
    if (!in_array($form['deprovision'], ['deactivate', 'delete'], true)) {
        $errors['deprovision'] = 'Choose deactivate or delete.';
    } elseif (!$ops[$form['deprovision']]) {
        $errors['deprovision'] = "The deprovision action is {$form['deprovision']}, so tick the " . ucfirst($form['deprovision']) . ' operation too.';
    }
    if (!in_array($form['schedule'], ['manual', 'hourly', 'daily'], true)) {
        $errors['schedule'] = 'Choose manual, hourly or daily.';
    }
    if (!preg_match('/^(\d{1,6}|\d{1,3}%)$/', $form['threshold'])) {
        $errors['threshold'] = 'The deletion threshold is a count (e.g. 50) or a percentage of the linked users (e.g. 10%).';
    }
    if ($errors === []) {
        try {
            \ScimProvisioner\Connector::open($admin->runtime(), $admin->connectorConfig($form));
            $admin->save(array_intersect_key($form, array_flip(['operations', 'deprovision', 'scope_active', 'automatic', 'schedule', 'threshold'])));
            flash('success', 'The provisioning settings were saved.');
            redirect('/provisioning');
        } catch (ProvisioningException $x) {
            $errors['policy'] = $admin->redact($x->getMessage());
        }
    }
}
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST' && in_array($action, ['plan', 'sync'], true)) {
    try {
        $site = $admin->site();
        if ($action === 'plan') {
            $counts = $site->sync(true);
            $rows = '';
            foreach ($site->lastPlan as $p) {
                $rows .= '<tr><td>' . e($p['action']) . '</td><td>' . e($p['user_id']) . '</td><td>' . e($p['name'] === '' ? '(deleted)' : $p['name']) . '</td><td>' . e($p['reason'] ?? '') . '</td></tr>';
            }
            $summary = [];
            foreach ($counts as $k => $v) {
                $summary[] = "{$k}: {$v}";
            }
            $result = '<div class="card" id="plan"><h2>Plan: nothing has been sent yet</h2><p id="plan-summary">' . e(implode(', ', $summary)) . '</p>'
                . ($rows !== '' ? '<table class="grid" id="plan-rows"><thead><tr><th>Action</th><th>User id</th><th>Name</th><th>Reason</th></tr></thead><tbody>' . $rows . '</tbody></table>' : '<p>Every user is up to date.</p>')
                . '<form method="post">' . csrf_field() . '<input type="hidden" name="action" value="sync">'
                . '<label class="check"><input type="checkbox" name="allow_deletes" value="1" id="allow-deletes"> Allow more deactivations/deletions than the threshold</label>'
                . '<button id="confirm-sync">Confirm: sync now</button> <a href="/provisioning">Cancel</a></form></div>';
        } else {
            $counts = $site->sync(false, !empty($_POST['allow_deletes']));
            $summary = [];
            foreach ($counts as $k => $v) {
                $summary[] = "{$k}: {$v}";
            }
            flash($counts['failed'] > 0 ? 'error' : 'success', 'Sync finished: ' . implode(', ', $summary) . ($counts['failed'] > 0 ? '. See the provisioning log for the failures.' : '.'));
            redirect('/provisioning');
        }
    } catch (ProvisioningException|GuestTrapException|\RuntimeException $x) {
        $result = '<div class="flash error" id="sync-error">' . e($admin->redact(str_replace('`sync --plan`, then run with --allow-deletes', '"Sync now" for the plan, then tick "Allow more deactivations/deletions"', $x->getMessage()))) . '</div>';
    }
}
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST' && $action === 'metrics_token') {
    // Shown in this response only (not flashed: the session file would keep it); kept as its SHA-256.
    $result = '<div class="flash success" id="metrics-token-new">New metrics token (shown once; the old one no longer works): <code id="metrics-token">'
        . e($admin->rotateMetricsToken()) . '</code></div>';
}
// The provisioning counters (issue 31, part 3), as GET /metrics serves them to Prometheus.
$counters = '';
foreach (\ScimSamples\DrupalSite\Site::metricRows($admin->db) as $row) {
    preg_match_all('/="((?:[^"\\\\]|\\\\.)*)"/', $row['labels'], $m);
    $counters .= '<tr><td>' . e($row['metric']) . '</td><td>' . e(implode(' ', $m[1])) . '</td><td class="number">'
        . e(\ScimProvisioner\PrometheusText::number($row['value'])) . '</td></tr>';
}
$metricsCard = '<div class="card" id="metrics"><h2>Provisioning counters</h2>'
    . '<table class="grid" id="metrics-rows"><thead><tr><th>Metric</th><th>Labels</th><th>Value</th></tr></thead><tbody>' . $counters . '</tbody></table>'
    . '<p class="hint">Prometheus scrapes them at <code>/metrics</code> with the metrics token as a bearer token (not the SCIM token). '
    . ($admin->hasMetricsToken() ? 'A metrics token is set.' : 'No metrics token is set yet.') . '</p>'
    . '<form method="post">' . csrf_field() . '<input type="hidden" name="action" value="metrics_token">'
    . '<button id="rotate-metrics-token">' . ($admin->hasMetricsToken() ? 'Rotate the metrics token' : 'Generate a metrics token') . '</button></form></div>';
$err = static fn (string $k): string => isset($errors[$k]) ? '<span class="field-error" id="error-' . $k . '">' . e($errors[$k]) . '</span>' : '';
$ops = '';
foreach (['create' => 'Create', 'update' => 'Update', 'deactivate' => 'Deactivate', 'delete' => 'Delete'] as $op => $label) {
    $ops .= '<label class="check"><input type="checkbox" name="op[' . $op . ']" id="op-' . $op . '" value="1"' . checked((bool) ($form['operations'][$op] ?? false)) . '> ' . $label . '</label>';
}
$schedule = '';
foreach (['manual' => 'Manual / on demand only', 'hourly' => 'Every hour', 'daily' => 'Every day'] as $k => $label) {
    $schedule .= '<option value="' . $k . '"' . ($form['schedule'] === $k ? ' selected' : '') . '>' . e($label) . '</option>';
}
page('Provisioning', ($errors !== [] ? '<div class="flash error" id="form-error">Nothing was saved: correct the fields marked below.' . (isset($errors['policy']) ? ' ' . e($errors['policy']) : '') . '</div>' : '')
    . $result
    . '<form method="post" class="card">' . csrf_field() . '<input type="hidden" name="action" value="save">'
    . '<fieldset><legend>Provisioning operations</legend>' . $ops . '</fieldset>'
    . '<fieldset><legend>When a user is deleted or leaves the scope</legend>'
    . '<label class="check"><input type="radio" name="deprovision" value="deactivate" id="deprovision-deactivate"' . checked($form['deprovision'] === 'deactivate') . '> Deactivate the remote user</label>'
    . '<label class="check"><input type="radio" name="deprovision" value="delete" id="deprovision-delete"' . checked($form['deprovision'] === 'delete') . '> Delete the remote user</label>' . $err('deprovision') . '</fieldset>'
    . '<fieldset><legend>Scope</legend><label class="check"><input type="checkbox" name="scope_active" value="1" id="scope-active"' . checked((bool) $form['scope_active']) . '> Only active (not blocked) users</label></fieldset>'
    . '<fieldset><legend>Automatic provisioning</legend><label class="check"><input type="checkbox" name="automatic" value="1" id="automatic"' . checked((bool) $form['automatic']) . '> Provision each change to a user at once</label></fieldset>'
    . '<label>Schedule <select name="schedule" id="schedule">' . $schedule . '</select></label>' . $err('schedule')
    . '<span class="hint" id="last-scheduled">' . (isset($s['last_scheduled_sync']) ? 'Last scheduled sync: ' . e(gmdate('Y-m-d H:i', (int) $s['last_scheduled_sync'])) . ' UTC (its counts are in the provisioning log).' : 'No scheduled sync has run yet. admin-site runs it; in production, cron runs drupal-site sync.') . '</span>'
    . '<label>Deletion threshold <input name="threshold" id="threshold" size="6" value="' . e($form['threshold']) . '"></label>' . $err('threshold')
    . '<span class="hint">A sync that would deactivate or delete more users than this stops before sending anything.</span>'
    . '<button id="save-provisioning">Save</button></form>'
    . '<form method="post" class="card">' . csrf_field() . '<input type="hidden" name="action" value="plan"><h2>Sync now</h2>'
    . '<p>Shows what a full sync would do first; nothing is sent until you confirm.</p><button id="sync-now">Sync now…</button></form>'
    . $metricsCard);
