<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

/** @var Admin $admin */
$error = '';
$name = 'admin';
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $name = (string) ($_POST['name'] ?? '');
    $client = (string) ($_SERVER['REMOTE_ADDR'] ?? '');
    // Refused before any password check while throttled: a flood of attempts costs no
    // bcrypt, so it cannot stall this single-threaded site (issue 28).
    $wait = $admin->loginThrottle($client, $name);
    if ($wait > 0) {
        http_response_code(429);
        header('Retry-After: ' . $wait);
        page('Log in', '<p class="error" id="login-error">Too many failed logins: try again in ' . $wait . ' seconds.</p>');
        return;
    }
    if ($admin->checkLogin($name, (string) ($_POST['password'] ?? ''))) {
        $admin->loginSucceeded($client, $name);
        session_regenerate_id(true);
        $_SESSION['admin'] = $name;
        $_SESSION['login_at'] = $_SESSION['last_seen'] = time();
        $_SESSION['csrf'] = bin2hex(random_bytes(32));   // a token seen before login is not valid after it
        $next = (string) ($_GET['next'] ?? '/settings');
        redirect(preg_match('#^/[a-z]*$#', $next) ? $next : '/settings');
    }
    $admin->loginFailed($client, $name);
    $error = '<p class="error" id="login-error">Unknown user name or wrong password.</p>';
}
page('Log in', $error . '<form method="post" class="card narrow">' . csrf_field()
    . '<label>User name <input name="name" id="name" value="' . e($name) . '" autocomplete="username" required></label>'
    . '<label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label>'
    . '<button id="login">Log in</button></form>');
