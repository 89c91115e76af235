<?php

declare(strict_types=1);

/*
 * The scim-provisioner PHP library's autoloader: PSR-4, namespace ScimProvisioner\ in src/.
 * `require __DIR__ . '/path/to/lib/autoload.php';` is all a site needs (no Composer).
 */

spl_autoload_register(static function (string $class): void {
    $prefix = 'ScimProvisioner\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
