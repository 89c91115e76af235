<?php

declare(strict_types=1);

/*
 * The samples' class loading: Composer's generated autoloader when it has been made
 * (`composer dump-autoload --dev` in hosts/php, as hosts/php/run-tests does), which also maps
 * the samples' own namespaces; otherwise the library's own autoloader, so a sample still runs
 * from a checkout where Composer was never run. The entry points require their sample
 * classes explicitly either way.
 */

$composer = __DIR__ . '/../vendor/autoload.php';
require is_file($composer) ? $composer : __DIR__ . '/../lib/autoload.php';
