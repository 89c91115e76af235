<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

/**
 * The server side: the Joomla-like site's SCIM configuration screen (the component's server
 * role, started by `admin-site --with-joomla`): its SCIM base URL, a bearer token that can be
 * generated or rotated (shown once), and the users an identity provider created there.
 *
 * @var Admin $admin
 */
$url = (string) getenv('JOOMLA_SITE_URL');
$db = (string) getenv('JOOMLA_SITE_DB');
$tokenFile = (string) getenv('JOOMLA_SITE_TOKEN_FILE');
if ($url === '' || $db === '' || $tokenFile === '') {
    page('Server side (Joomla-like site)', '<p class="error">No Joomla-like site runs beside this one: start it with <code>admin-site --with-joomla</code>.</p>');
    return;
}
$newToken = null;
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST' && ($_POST['action'] ?? '') === 'rotate') {
    $newToken = bin2hex(random_bytes(24));
    // 0600 from its creation (no window where another user can read it), then renamed over
    // the old one: each request sees the old token or the new one.
    $tmp = $tokenFile . '.' . bin2hex(random_bytes(6)) . '.tmp';
    \ScimProvisioner\Internal\PrivateDir::writeNewFile($tmp, $newToken);
    if (!rename($tmp, $tokenFile)) {
        @unlink($tmp);
        throw new \RuntimeException('the new token could not replace the old one; the old one still works');
    }
}
$pdo = new \PDO('sqlite:' . $db);
$pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
$hasUsers = (bool) $pdo->query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'users'")->fetchColumn();
$total = $hasUsers ? (int) $pdo->query('SELECT COUNT(*) FROM users')->fetchColumn() : 0;
$per = 50;
$pageNo = max(1, min((int) ($_GET['page'] ?? 1), max(1, (int) ceil($total / $per))));
$rows = '';
if ($hasUsers) {
    $stmt = $pdo->prepare('SELECT id, name, mail, active FROM users ORDER BY id LIMIT ? OFFSET ?');
    $stmt->execute([$per, ($pageNo - 1) * $per]);
    foreach ($stmt->fetchAll(\PDO::FETCH_ASSOC) as $u) {
        $rows .= '<tr data-user="' . e($u['name']) . '"><td>' . e($u['id']) . '</td><td>' . e($u['name']) . '</td><td>' . e($u['mail']) . '</td><td>' . ($u['active'] ? 'Active' : '<span class="badge">Blocked</span>') . '</td></tr>';
    }
}
$hasToken = trim((string) @file_get_contents($tokenFile)) !== '';
page('Server side (Joomla-like site)',
    '<div class="card"><h2>SCIM Configuration</h2><label>SCIM Base URL <input id="joomla-base-url" size="60" readonly value="' . e($url) . '"></label>'
    . '<span class="hint">Paste it into the identity provider (or this site\'s SCIM client settings).</span>'
    . ($newToken !== null
        ? '<div class="flash success" id="new-token-box">New SCIM bearer token (shown this once; copy it now, the old one no longer works):<br><code id="new-token">' . e($newToken) . '</code></div>'
        : '<p id="token-state">' . ($hasToken ? 'A SCIM bearer token is set (not shown).' : 'No token yet: generate one.') . '</p>')
    . '<form method="post">' . csrf_field() . '<input type="hidden" name="action" value="rotate"><button id="rotate-token">' . ($hasToken ? 'Rotate token' : 'Generate token') . '</button></form></div>'
    . '<h2>Users created by the identity provider</h2>' . pager('/server?', $pageNo, $per, $total)
    . '<table class="grid" id="joomla-users"><thead><tr><th>Id</th><th>User name</th><th>Email</th><th>Status</th></tr></thead><tbody>' . $rows . '</tbody></table>');
