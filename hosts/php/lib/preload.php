<?php

declare(strict_types=1);

/*
 * opcache.preload script for FPM, php -S and other non-CLI SAPIs under ffi.enable=preload,
 * where FFI may be used only by code compiled while preloading. It makes sure the bridge's
 * declarations exist under the FFI scope "SCIM_BRIDGE" (from ffi.preload, or else loaded
 * here from the header bin/ffi-preload-header wrote: env SCIM_BRIDGE_PRELOAD_HEADER, default
 * scim_bridge.preload.h beside this file), and preloads the library's classes, so their
 * FFI calls are allowed. Runtime then takes the scope with FFI::scope().
 *
 *   ffi.enable = preload
 *   ffi.preload = /path/to/lib/scim_bridge.preload.h      ; required with opcache.preload_user
 *   opcache.enable = 1
 *   opcache.preload = /path/to/lib/preload.php
 *   opcache.preload_user = www-data                        ; when the master runs as root
 */

// With opcache.preload_user set (needed when the master runs as root), FFI::load() is not
// allowed: the header then comes from `ffi.preload` and the scope exists already.
$loaded = true;
try {
    FFI::scope('SCIM_BRIDGE');
} catch (FFI\Exception) {
    $loaded = false;
}
if (!$loaded) {
    $header = getenv('SCIM_BRIDGE_PRELOAD_HEADER') ?: __DIR__ . '/scim_bridge.preload.h';
    if (!is_file($header)) {
        throw new RuntimeException(
            "scim-provisioner preload: {$header} is missing; write it with lib/bin/ffi-preload-header"
        );
    }
    FFI::load($header);
}

require_once __DIR__ . '/autoload.php';
// Preload the library's classes through the autoloader, so each is linked with its parents.
$sources = new RecursiveDirectoryIterator(__DIR__ . '/src', FilesystemIterator::SKIP_DOTS);
foreach (new RecursiveIteratorIterator($sources) as $file) {
    if ($file->getExtension() === 'php') {
        $relative = substr($file->getPathname(), strlen(__DIR__ . '/src/'), -4);
        $name = 'ScimProvisioner\\' . str_replace('/', '\\', $relative);
        class_exists($name) || interface_exists($name) || trait_exists($name) || enum_exists($name);
    }
}
