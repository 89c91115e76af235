<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

// Only through router.php (its session, CSRF and login checks): never as a script of its own.
if (!defined('ADMIN_SITE_ROUTER')) {
    http_response_code(404);
    echo "This page runs only through the admin site's router (router.php).\n";
    exit(1);
}

use ScimProvisioner\ProvisioningException;

/** @var Admin $admin */
$s = $admin->settings();
$errors = [];
$form = ['base_url' => $s['base_url'], 'timeout' => (string) intdiv((int) $s['timeout'], 1000)];
// OAuth 2.0 client credentials: everything but the secret is shown again.
foreach (['auth', 'token_url', 'client_id', 'scope', 'audience', 'client_auth'] as $key) {
    $form[$key] = (string) $s[$key];
}
$result = '';
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
    $form['base_url'] = trim((string) ($_POST['base_url'] ?? ''));
    $form['timeout'] = trim((string) ($_POST['timeout'] ?? ''));
    $newToken = (string) ($_POST['token'] ?? '');
    $newSecret = (string) ($_POST['client_secret'] ?? '');
    foreach (['token_url', 'client_id', 'scope', 'audience'] as $key) {
        $form[$key] = trim((string) ($_POST[$key] ?? ''));
    }
    $form['auth'] = ($_POST['auth'] ?? 'bearer') === 'oauth2' ? 'oauth2' : 'bearer';
    $form['client_auth'] = ($_POST['client_auth'] ?? '') === 'client_secret_post' ? 'client_secret_post' : 'client_secret_basic';
    $oauth2 = $form['auth'] === 'oauth2';
    $allowInsecure = ($_POST['allow_insecure_http'] ?? '') === '1';
    $parts = parse_url($form['base_url']);
    if ($form['base_url'] === '' || !is_array($parts) || !in_array($parts['scheme'] ?? '', ['http', 'https'], true) || !isset($parts['host'])) {
        $errors['base_url'] = 'Enter the SCIM base URL, starting with https:// (or http:// on loopback), e.g. https://joomla.example/api/scim/v2.';
    } elseif (!$allowInsecure && Admin::remotePlainHttp($form['base_url'])) {
        // The component refuses it too (invalid-config): the token would cross the network unencrypted.
        $errors['base_url'] = 'http:// is allowed only to this machine (127.0.0.1, ::1, localhost): elsewhere the token would '
            . 'cross the network unencrypted. Use https://, or tick "Allow plain http://" below if the network is trusted.';
    }
    // A token is sent only to the server it was entered for: a new origin needs it again.
    $originChanged = $s['base_url'] !== '' && Admin::origin($s['base_url']) !== Admin::origin($form['base_url']);
    if (!preg_match('/^\d+$/', $form['timeout']) || (int) $form['timeout'] < 1 || (int) $form['timeout'] > 600) {
        $errors['timeout'] = 'The timeout is a whole number of seconds from 1 to 600.';
    }
    if ($newToken !== '' && preg_match('/\s/', $newToken)) {
        $errors['token'] = 'A bearer token has no spaces or line breaks; paste it again.';
    }
    if ($oauth2) {
        // The client secret goes only to the token endpoint: a new origin there needs it again.
        $tokenParts = parse_url($form['token_url']);
        if ($form['token_url'] === '' || !is_array($tokenParts) || !in_array($tokenParts['scheme'] ?? '', ['http', 'https'], true) || !isset($tokenParts['host'])) {
            $errors['token_url'] = 'Enter the token endpoint of the authorization server, e.g. https://idp.example/oauth2/token.';
        } elseif (!$allowInsecure && Admin::remotePlainHttp($form['token_url'])) {
            $errors['token_url'] = 'http:// is allowed only to this machine: elsewhere the client secret would cross the network '
                . 'unencrypted. Use https://, or tick "Allow plain http://" below if the network is trusted.';
        }
        if ($form['client_id'] === '') {
            $errors['client_id'] = 'Enter the client id the authorization server gave this site.';
        }
        $tokenOriginChanged = $s['token_url'] !== '' && Admin::origin($s['token_url']) !== Admin::origin($form['token_url']);
        if ($newSecret !== '' && preg_match('/[\r\n]/', $newSecret)) {
            $errors['client_secret'] = 'A client secret has no line breaks; paste it again.';
        } elseif ($s['client_secret'] === '' && $newSecret === '') {
            $errors['client_secret'] = 'Paste the client secret from the authorization server.';
        } elseif ($tokenOriginChanged && $newSecret === '') {
            $errors['client_secret'] = 'The token URL now points to another server (' . Admin::origin($form['token_url'])
                . '): enter the client secret again. The saved one is sent only to ' . Admin::origin($s['token_url']) . '.';
        }
    } elseif ($s['token'] === '' && $newToken === '') {
        $errors['token'] = 'Paste the SCIM bearer token from the server site.';
    } elseif ($originChanged && $newToken === '') {
        $errors['token'] = 'The base URL now points to another server (' . Admin::origin($form['base_url'])
            . '): enter its bearer token. The saved one is sent only to ' . Admin::origin($s['base_url']) . '.';
    }
    if ($errors === []) {
        $values = ['base_url' => $form['base_url'], 'timeout' => (int) $form['timeout'] * 1000, 'allow_insecure_http' => $allowInsecure];
        if ($newToken !== '') {
            $values['token'] = $newToken;
        }
        $values += ['auth' => $form['auth']];
        if ($oauth2) {
            foreach (['token_url', 'client_id', 'scope', 'audience', 'client_auth'] as $key) {
                $values[$key] = $form[$key];
            }
            if ($newSecret !== '') {
                $values['client_secret'] = $newSecret;
            }
        }
        $admin->save($values);
        try {
            $caps = $admin->site()->testConnection();
            $rows = [
                'Discovery (ServiceProviderConfig)' => $caps->discovered ? 'yes' : 'no (defaults assumed)',
                'PATCH' => $caps->patch ? 'yes' : 'no',
                'Bulk' => $caps->bulk ? "yes, up to {$caps->bulk->maxOperations} operations" : 'no',
                'Filter' => $caps->filterMaxResults !== null ? "yes, {$caps->filterMaxResults} results at most" : 'no',
                'ETags' => $caps->etag ? 'yes' : 'no',
                'Sort' => $caps->sort ? 'yes' : 'no',
                'Change password' => $caps->changePassword ? 'yes' : 'no',
            ];
            $table = '';
            foreach ($rows as $k => $v) {
                $table .= '<tr><th>' . e($k) . '</th><td>' . e($v) . '</td></tr>';
            }
            $findings = '';
            foreach ($admin->logger->lines as [$level, $line]) {
                $findings .= '<li class="' . e($level) . '">' . e($admin->redact($line)) . '</li>';
            }
            $result = '<div class="flash success" id="test-result">Connection successful: the credentials work.</div>'
                . '<h2>What the server supports</h2><table class="kv" id="capabilities">' . $table . '</table>'
                . '<h2>Findings</h2>' . ($findings !== '' ? '<ul id="findings">' . $findings . '</ul>' : '<p id="findings">No findings: the mapping fits what the server requires.</p>');
        } catch (ProvisioningException $x) {
            $result = '<div class="flash error" id="test-result">Test failed: ' . e($admin->redact($x->getMessage()))
                . '</div>'
                . '<p>The settings were saved; correct them and test again.</p>';
        }
        $s = $admin->settings();
    }
}
$err = static fn (string $k): string => isset($errors[$k]) ? '<span class="field-error" id="error-' . $k . '">' . e($errors[$k]) . '</span>' : '';
$secretNote = $s['client_secret'] !== '' ? '<span class="hint" id="client-secret-saved">A client secret is saved (not shown). Paste a new one to replace it; leave empty to keep it (a token URL on another scheme, host or port needs it again).</span>'
    : '<span class="hint">No client secret saved.</span>';
$tokenNote = $s['token'] !== '' ? '<span class="hint" id="token-saved">A token is saved (not shown). Paste a new one to replace it; leave empty to keep it (for the same server: a new scheme, host or port needs the token again).</span>'
    : '<span class="hint">No token saved yet.</span>';
page('SCIM client settings', ($errors !== [] ? '<div class="flash error" id="form-error">Nothing was saved: correct the fields marked below.</div>' : '')
    . $result
    . '<form method="post" class="card" autocomplete="off">' . csrf_field()
    . '<label>SCIM base URL <input name="base_url" id="base_url" size="60" value="' . e($form['base_url']) . '" placeholder="https://joomla.example/api/scim/v2"></label>' . $err('base_url')
    . '<fieldset><legend>Authentication</legend>'
    . '<label class="check"><input type="radio" name="auth" id="auth-bearer" value="bearer"' . checked($form['auth'] !== 'oauth2')
    . '> Bearer token</label>'
    . '<label>SCIM bearer token <input type="password" name="token" id="token" size="60" value="" autocomplete="new-password"></label>' . $tokenNote . $err('token')
    . '<label class="check"><input type="radio" name="auth" id="auth-oauth2" value="oauth2"' . checked($form['auth'] === 'oauth2')
    . '> OAuth 2.0 client credentials (the site gets a token from the authorization server and renews it)</label>'
    . '<label>Token URL <input name="token_url" id="token_url" size="60" value="' . e($form['token_url']) . '" placeholder="https://idp.example/oauth2/token"></label>' . $err('token_url')
    . '<label>Client id <input name="client_id" id="client_id" size="40" value="' . e($form['client_id']) . '"></label>' . $err('client_id')
    . '<label>Client secret <input type="password" name="client_secret" id="client_secret" size="60" value="" autocomplete="new-password"></label>' . $secretNote . $err('client_secret')
    . '<label>Scope (optional) <input name="scope" id="scope" size="40" value="' . e($form['scope']) . '"></label>'
    . '<label>Audience (optional) <input name="audience" id="audience" size="40" value="' . e($form['audience']) . '"></label>'
    . '<label>Client authentication <select name="client_auth" id="client_auth">'
    . '<option value="client_secret_basic"' . ($form['client_auth'] !== 'client_secret_post' ? ' selected' : '') . '>HTTP Basic (client_secret_basic)</option>'
    . '<option value="client_secret_post"' . ($form['client_auth'] === 'client_secret_post' ? ' selected' : '') . '>In the form body (client_secret_post)</option>'
    . '</select></label></fieldset>'
    . '<label class="check"><input type="checkbox" name="allow_insecure_http" id="allow_insecure_http" value="1"'
    . checked((bool) ($s['allow_insecure_http'] ?? false)) . '> Allow plain http:// to a host other than this machine (unencrypted: the token can be read on the network)</label>'
    . '<label>Timeout (seconds) <input name="timeout" id="timeout" size="5" value="' . e($form['timeout']) . '"></label>' . $err('timeout')
    . '<button id="save-test">Save and Test Credentials</button></form>');
