<?php

declare(strict_types=1);

/*
 * PHPUnit bootstrap: the library, the samples' helpers, the test support classes; peers
 * (scim2-server, the SCIMMY app) start on first use and are stopped when the run ends.
 */

// Composer's generated autoloader (composer.json: the library, the test support classes,
// the samples' helpers); hosts/php/run-tests writes it with `composer dump-autoload`.
$composer = __DIR__ . '/../vendor/autoload.php';
if (!is_file($composer)) {
    fwrite(STDERR, "hosts/php/vendor/autoload.php is missing: run `composer dump-autoload --dev` in hosts/php (hosts/php/run-tests does)\n");
    exit(1);
}
require $composer;

// The PSR interfaces and the implementations the adapters are tested with, from Debian's
// packages (php-psr-log, php-guzzlehttp-guzzle, php-guzzlehttp-psr7, php-nyholm-psr7; see
// scripts/debian-packages), which install under /usr/share/php with their own autoloaders.
$debianAutoloaders = [
    'Psr/Log/autoload.php', 'Psr/Http/Message/autoload.php', 'Psr/Http/Message/factory-autoload.php',
    'Psr/Http/Client/autoload.php', 'GuzzleHttp/autoload.php', 'GuzzleHttp/Psr7/autoload.php', 'Nyholm/Psr7/autoload.php',
];
foreach ($debianAutoloaders as $file) {
    $autoload = stream_resolve_include_path($file);
    if ($autoload !== false) {
        require_once $autoload;
    }
}

// Everything the tests talk to is on 127.0.0.1: no proxy.
foreach (['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'] as $var) {
    putenv($var);
}

register_shutdown_function(static function (): void {
    ScimProvisioner\Tests\Support\Peers::stopAll();
    ScimProvisioner\Tests\Support\Peers::removeTempDirs();
});
