<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

/** @var Admin $admin */
$error = '';
$name = 'admin';
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $name = (string) ($_POST['name'] ?? '');
    if ($admin->checkLogin($name, (string) ($_POST['password'] ?? ''))) {
        session_regenerate_id(true);
        $_SESSION['admin'] = $name;
        $next = (string) ($_GET['next'] ?? '/settings');
        redirect(preg_match('#^/[a-z]*$#', $next) ? $next : '/settings');
    }
    $error = '<p class="error" id="login-error">Unknown user name or wrong password.</p>';
}
page('Log in', $error . '<form method="post" class="card narrow">' . csrf_field()
    . '<label>User name <input name="name" id="name" value="' . e($name) . '" autocomplete="username" required></label>'
    . '<label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label>'
    . '<button id="login">Log in</button></form>');
