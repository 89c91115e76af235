<?php

declare(strict_types=1);

/*
 * A php -S front controller serving SCIM from a PdoDirectory (PdoDirectoryTest runs
 * scim2-tester and scim-sanity against it): SCIM_TOKEN, PDO_DSN, PDO_USER, PDO_PASSWORD
 * from the environment; everything under /scim/v2 goes to ScimServer::handle.
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\GuestTrapException;
use ScimProvisioner\PdoDirectory;
use ScimProvisioner\Request;
use ScimProvisioner\Response;
use ScimProvisioner\Runtime;
use ScimProvisioner\ScimServer;

const BASE_PATH = '/scim/v2';

try {
    $runtime = new Runtime();
    $directory = PdoDirectory::connect((string) getenv('PDO_DSN'), (string) getenv('PDO_USER'), (string) getenv('PDO_PASSWORD'), $runtime);
    $server = ScimServer::open($runtime, [
        'base_url' => 'http://' . ($_SERVER['HTTP_HOST'] ?? '127.0.0.1') . BASE_PATH,
        'token_env' => 'SCIM_TOKEN',
    ], $directory);
    $request = Request::fromGlobals(BASE_PATH, $server->maxPayload());
    if ($request === null) {
        Response::error(404, 'not found: the SCIM API is under ' . BASE_PATH)->send();
        return true;
    }
    $server->handle($request)->send();
} catch (GuestTrapException | Throwable $e) {
    error_log('pdo-scim-router: ' . $e::class . ': ' . $e->getMessage());
    Response::error(500, 'internal error')->send();
}
return true;
