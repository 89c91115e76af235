<?php

declare(strict_types=1);

/*
 * PSR-4 autoloading for the plugin, without Composer (a site installs a zip, nothing runs
 * on it): ScimProvisioner\WordPress\ -> src/, ScimProvisioner\ -> the PHP library's src/.
 * The zip carries the library in lib/; in the repository the plugin uses hosts/php/lib.
 */

if (!defined('ABSPATH') && PHP_SAPI !== 'cli') {
    exit;
}

(static function (): void {
    $library = is_dir(__DIR__ . '/lib/src') ? __DIR__ . '/lib/src' : dirname(__DIR__, 2) . '/php/lib/src';
    $prefixes = [
        'ScimProvisioner\\WordPress\\' => __DIR__ . '/src/',
        'ScimProvisioner\\' => $library . '/',
    ];
    spl_autoload_register(static function (string $class) use ($prefixes): void {
        foreach ($prefixes as $prefix => $dir) {
            if (strncmp($class, $prefix, strlen($prefix)) === 0) {
                $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
                return;
            }
        }
    });
})();
