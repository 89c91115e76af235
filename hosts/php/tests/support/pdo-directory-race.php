<?php

declare(strict_types=1);

/*
 * A child process of PdoDirectoryTest: races the other children on one database.
 *
 *   php pdo-directory-race.php DSN USER PASSWORD replace RESOURCE_ID ROUNDS
 *       each round: read the user's version, replace it with If-Match that version;
 *       prints one line per win: "<if-match version> <new version>"
 *   php pdo-directory-race.php DSN USER PASSWORD create NAME_PREFIX COUNT
 *       creates NAME_PREFIX-0 … NAME_PREFIX-(COUNT-1); prints each name it created
 *
 * The password comes on the command line only because this is a test's throwaway database.
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\DirectoryException;
use ScimProvisioner\PdoDirectory;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\Runtime;

[, $dsn, $user, $password, $mode, $arg, $count] = $argv;
$dir = PdoDirectory::connect($dsn, $user, $password, new Runtime(), ['cms_table' => null]);
$count = (int) $count;
// Everyone starts together: the parent creates the start file once every child is ready.
$ready = getenv('RACE_START_FILE');
while ($ready !== false && !is_file($ready)) {
    usleep(2000);
}
for ($i = 0; $i < $count; $i++) {
    try {
        if ($mode === 'replace') {
            $current = $dir->get(ResourceKind::User, $arg);
            $v = (int) trim((string) substr((string) $current?->version, 2), '"');
            $new = $dir->replace(ResourceKind::User, $arg, json_encode(['userName' => 'raced', 'nickName' => getmypid() . "-{$i}"]), null, $current?->version);
            echo $v, ' ', (int) trim(substr($new->version, 2), '"'), "\n";
        } else {
            $name = "{$arg}-{$i}";
            $dir->create(ResourceKind::User, json_encode(['userName' => $name]), null);
            echo $name, "\n";
        }
    } catch (DirectoryException $e) {
        if (!in_array($e->case, ['version-mismatch', 'conflict'], true)) {
            fwrite(STDERR, $e->getMessage() . "\n");
            exit(1);
        }
    }
}
