<?php

declare(strict_types=1);

/*
 * PHPUnit bootstrap: the library, the samples' helpers, the test support classes; peers
 * (scim2-server, the SCIMMY app) start on first use and are stopped when the run ends.
 */

require __DIR__ . '/../lib/autoload.php';
require __DIR__ . '/../samples/lib/PhpServer.php';
require __DIR__ . '/../samples/drupal-site/src/Site.php';
require __DIR__ . '/support/Peer.php';
require __DIR__ . '/support/Peers.php';
require __DIR__ . '/support/RecordingTransport.php';
require __DIR__ . '/support/FlakyTransport.php';

// Everything the tests talk to is on 127.0.0.1: no proxy.
foreach (['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'] as $var) {
    putenv($var);
}

register_shutdown_function(static function (): void {
    ScimProvisioner\Tests\Support\Peers::stopAll();
    ScimProvisioner\Tests\Support\Peers::removeTempDirs();
});
