<?php

declare(strict_types=1);

/*
 * The Joomla-like sample site: the component's server role behind PHP's built-in server.
 *
 *   SCIM_TOKEN=… JOOMLA_SITE_DB=/path/joomla.db php -d ffi.enable=1 -S 127.0.0.1:8080 hosts/php/samples/joomla-site/router.php
 *
 * (php -S is not the CLI SAPI: under PHP's default ffi.enable=preload it needs the preload
 * settings an FPM pool uses, see hosts/php/README.md, or ffi.enable=1 as above.)
 *
 * Every request under /scim/v2 goes to ScimServer::handle; the directory is answered from
 * SQLite (PdoSqliteDirectory: scim_users, scim_groups, and the site's own `users` table,
 * where each SCIM user is kept as a normal CMS user). GET / (or /users) shows the site's users
 * as JSON to a client presenting the same bearer token as the SCIM API (401 without it).
 *
 * Environment: SCIM_TOKEN (required: the bearer token clients must present),
 * JOOMLA_SITE_DB (default joomla-site.db beside this file), JOOMLA_SITE_POLICY (a policy
 * JSON document whose mapping, reversed, makes SCIM users CMS users; default Drupal-style),
 * JOOMLA_SITE_BASE_URL (default http://HOST/scim/v2 from the request), JOOMLA_SITE_LOG
 * (a file for warnings and errors; default the server's stderr), JOOMLA_SITE_TOKEN_FILE (read
 * the token from this file on every request, so it can be rotated), SCIM_BRIDGE_LIB and
 * SCIM_PROVISIONER_WASM (default: the repository's builds).
 */

require __DIR__ . '/../autoload.php';

use ScimProvisioner\GuestTrapException;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\Request;
use ScimProvisioner\Response;
use ScimProvisioner\Runtime;
use ScimProvisioner\ScimServer;
use ScimProvisioner\StreamLogger;

const BASE_PATH = '/scim/v2';

// The SQLite file (and its -wal, -shm) and the log are created 0600 from the start.
umask(0o077);
$database = getenv('JOOMLA_SITE_DB') ?: __DIR__ . '/joomla-site.db';
// JOOMLA_SITE_TOKEN_FILE: the token is read from this file on each request (the admin
// screen's "Generate / rotate token" replaces it), instead of SCIM_TOKEN.
if (($tokenFile = getenv('JOOMLA_SITE_TOKEN_FILE')) !== false && $tokenFile !== '') {
    $fileToken = trim((string) @file_get_contents($tokenFile));
    putenv('SCIM_TOKEN=' . $fileToken);
}
$logTarget = getenv('JOOMLA_SITE_LOG') ?: null;

try {
    $logger = new StreamLogger($logTarget, 'warning');
    $runtime = new Runtime();
    $directory = PdoSqliteDirectory::open($database, $runtime);
    $path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);

    if ($path === '/' || $path === '/users') {
        // The site's own user table: the CMS users the identity provider's users became.
        // Names, emails and fields: only for a client holding the SCIM token (issue 28).
        $expected = (string) getenv('SCIM_TOKEN');
        $presented = (string) ($_SERVER['HTTP_AUTHORIZATION'] ?? '');
        foreach (function_exists('getallheaders') ? getallheaders() : [] as $name => $value) {
            if (strcasecmp((string) $name, 'Authorization') === 0) {
                $presented = (string) $value;   // php -S passes it only here
            }
        }
        if ($expected === '' || !hash_equals('Bearer ' . $expected, $presented)) {
            (new Response(401, [['Content-Type', 'application/json'], ['WWW-Authenticate', 'Bearer realm="joomla-site"']],
                '{"error":"the user listing needs the SCIM bearer token (Authorization: Bearer …)"}'))->send();
            return true;
        }
        $rows = $directory->pdo()->query('SELECT id, name, mail, fields, active FROM users ORDER BY name')->fetchAll(PDO::FETCH_ASSOC);
        $users = array_map(static fn (array $r): array => [
            'id' => $r['id'], 'name' => $r['name'], 'mail' => $r['mail'],
            'fields' => json_decode((string) $r['fields'], true), 'active' => (bool) $r['active'],
        ], $rows);
        (new Response(200, [['Content-Type', 'application/json']], (string) json_encode(['users' => $users], JSON_UNESCAPED_SLASHES)))->send();
        return true;
    }

    $host = (string) ($_SERVER['HTTP_HOST'] ?? '127.0.0.1');
    $server = ScimServer::open($runtime, [
        'base_url' => getenv('JOOMLA_SITE_BASE_URL') ?: 'http://' . $host . BASE_PATH,
        'token_env' => 'SCIM_TOKEN',
        'policy' => getenv('JOOMLA_SITE_POLICY') ?: '',
    ], $directory, $logger);
    $request = Request::fromGlobals(BASE_PATH, $server->maxPayload());
    if ($request === null) {
        Response::error(404, 'not found: the SCIM API is under ' . BASE_PATH)->send();
        return true;
    }
    try {
        $server->handle($request)->send();
    } catch (GuestTrapException $e) {
        $logger->error($e->getMessage());
        Response::error(500, 'internal error: the request could not be completed')->send();
    }
} catch (Throwable $e) {
    // Set-up failures (no token, no bridge, unreadable database): a clear 500 and a log line.
    error_log('joomla-site: ' . $e::class . ': ' . $e->getMessage());
    Response::error(500, 'the SCIM service is not available; see the server log')->send();
}
return true;
