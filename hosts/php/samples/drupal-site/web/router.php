<?php

declare(strict_types=1);

/*
 * The Drupal-like site's admin screens (the seed guide's screens), for php -S:
 *
 *   ADMIN_SITE_DIR=/path/state php -S 127.0.0.1:8090 hosts/php/samples/drupal-site/web/router.php
 *
 * with the FFI preload settings (see hosts/php/README.md); `hosts/php/samples/admin-site`
 * does all of it and prints the URL and the first-run admin password.
 *
 * Pages: /login, /settings, /mapping, /provisioning, /users, /log, and /server (the
 * Joomla-like site's SCIM screen, when admin-site --with-joomla runs it). Every form carries a CSRF
 * token; every page but /login needs the admin session (cookie HttpOnly, SameSite=Strict).
 * GET /metrics is for Prometheus: the metrics token as a bearer token, no session.
 */

require __DIR__ . '/../../autoload.php';
require __DIR__ . '/../src/Site.php';
require __DIR__ . '/Admin.php';
require __DIR__ . '/views.php';

use ScimProvisioner\Internal\PrivateDir;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\UserEvent;
use ScimSamples\DrupalSite\Web\Admin;

use function ScimSamples\DrupalSite\Web\{e, page, csrf_field, redirect, flash};

$path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
if ($path === '/style.css') {
    header('Content-Type: text/css');
    readfile(__DIR__ . '/style.css');
    return true;
}
if ($path === '/health') {
    echo 'ok';
    return true;
}

// GET /metrics (issue 31, part 3): the provisioning counters in the Prometheus text format,
// for a scraper presenting the metrics token as a bearer token (made on the Provisioning
// screen, kept only as its SHA-256). No session, no cookie, and the SCIM token does not count.
if ($path === '/metrics') {
    umask(0o077);
    try {
        $dir = PrivateDir::ensure(getenv('ADMIN_SITE_DIR') ?: PrivateDir::userStateDir('admin-site'), "the admin site's state");
        $admin = new Admin($dir);
        $authorization = $_SERVER['HTTP_AUTHORIZATION'] ?? null;
        if ($authorization === null && function_exists('getallheaders')) {
            $authorization = array_change_key_case((array) getallheaders())['authorization'] ?? null;
        }
        header('Cache-Control: no-store');
        if (!$admin->metricsAuthorized(is_string($authorization) ? $authorization : null)) {
            http_response_code(401);
            header('WWW-Authenticate: Bearer realm="metrics"');
            header('Content-Type: text/plain; charset=utf-8');
            echo "present the metrics token (Provisioning screen) as a bearer token\n";
            return true;
        }
        header('Content-Type: ' . \ScimProvisioner\PrometheusText::CONTENT_TYPE);
        echo \ScimSamples\DrupalSite\Site::metricsText($admin->db);
    } catch (Throwable $t) {
        error_log('admin-site: metrics: ' . $t::class . ': ' . $t->getMessage());
        http_response_code(500);
        header('Content-Type: text/plain; charset=utf-8');
        echo "the metrics could not be read; the server log says why\n";
    }
    return true;
}

// Files (SQLite, sessions) are 0600 from their creation; the state folder and its sessions
// folder must be this user's own and writable by nobody else, or the site refuses to start:
// another user could otherwise plant an admin account or a session (issue 28).
umask(0o077);
try {
    $dir = PrivateDir::ensure(getenv('ADMIN_SITE_DIR') ?: PrivateDir::userStateDir('admin-site'), "the admin site's state");
    $sessions = PrivateDir::ensure($dir . '/sessions', "the admin site's sessions");
} catch (RuntimeException $e) {
    error_log('admin-site: ' . $e->getMessage());
    http_response_code(500);
    page('Error', '<p class="error">The site cannot start: its state folder is not private. The server log says which and why.</p>');
    return true;
}
// Admin sessions (issue 28): only ids this site issued (strict mode); Secure over HTTPS
// (directly or behind a TLS proxy); an idle and an absolute lifetime, in seconds.
const ADMIN_SITE_ROUTER = true;   // the page scripts run only when this router includes them
$https = (($_SERVER['HTTPS'] ?? '') !== '' && $_SERVER['HTTPS'] !== 'off')
    || strtolower((string) ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '')) === 'https';
$idleSeconds = max(1, (int) (getenv('ADMIN_SITE_SESSION_IDLE') ?: 1800));
$maxSeconds = max(1, (int) (getenv('ADMIN_SITE_SESSION_MAX') ?: 8 * 3600));
ini_set('session.use_strict_mode', '1');
ini_set('session.use_only_cookies', '1');
ini_set('session.gc_maxlifetime', (string) $maxSeconds);
session_save_path($sessions);
session_name('drupal_admin');
session_set_cookie_params(['httponly' => true, 'samesite' => 'Strict', 'path' => '/', 'secure' => $https]);
session_start();
if (isset($_SESSION['admin'])) {
    $now = time();
    if ($now - (int) ($_SESSION['last_seen'] ?? 0) > $idleSeconds || $now - (int) ($_SESSION['login_at'] ?? 0) > $maxSeconds) {
        $_SESSION = [];
        session_regenerate_id(true);   // the expired id is gone from the server, not only emptied
        $_SESSION['flash'][] = ['error', 'Your session expired; log in again.'];
    } else {
        $_SESSION['last_seen'] = $now;
    }
}
header('X-Frame-Options: DENY');
header("Content-Security-Policy: default-src 'self'");
header('Referrer-Policy: no-referrer');

$admin = null;
try {
    $admin = new Admin($dir);
    $admin->ensureAdmin();   // normally done (and printed) by the start command
    $_SESSION['csrf'] ??= bin2hex(random_bytes(32));
    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    if ($method === 'POST' && !hash_equals($_SESSION['csrf'], (string) ($_POST['csrf'] ?? ''))) {
        http_response_code(403);
        page('Forbidden', '<p class="error">The form expired or did not come from this site (CSRF check failed). Reload the page and try again.</p>');
        return true;
    }
    if ($path === '/logout' && $method === 'POST') {
        $_SESSION = [];
        session_destroy();
        // The browser drops the cookie too (expired, same attributes as when it was set).
        $params = session_get_cookie_params();
        setcookie(session_name(), '', ['expires' => 1, 'path' => $params['path'], 'secure' => $params['secure'],
            'httponly' => true, 'samesite' => 'Strict']);
        redirect('/login');
    }
    if ($path === '/login') {
        require __DIR__ . '/pages/login.php';
        return true;
    }
    if (!isset($_SESSION['admin'])) {
        redirect('/login?next=' . rawurlencode($path));
    }
    $pages = ['/' => 'settings', '/settings' => 'settings', '/mapping' => 'mapping', '/provisioning' => 'provisioning',
        '/users' => 'users', '/log' => 'log', '/server' => 'server'];
    if (!isset($pages[$path])) {
        http_response_code(404);
        page('Not found', '<p class="error">No such page.</p>');
        return true;
    }
    require __DIR__ . '/pages/' . $pages[$path] . '.php';
} catch (Throwable $t) {
    // Never a stack trace or a secret on an error page; the server log gets the class and message.
    $message = $admin !== null ? $admin->redact($t->getMessage()) : 'the site could not start';
    error_log('admin-site: ' . $t::class . ': ' . $message);
    http_response_code(500);
    page('Error', '<p class="error">Something went wrong: ' . e($message) . '</p>');
}
return true;
