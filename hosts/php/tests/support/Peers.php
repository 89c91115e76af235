<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimProvisioner\Runtime;

/**
 * The peers and the runtime the tests share: each peer is started on first use and stopped
 * when the test process ends (register_shutdown_function in the bootstrap).
 */
final class Peers
{
    /** @var array<string, Peer> */
    private static array $peers = [];
    /** @var array<string, Runtime> */
    private static array $runtimes = [];

    public static function get(string $name): Peer
    {
        return self::$peers[$name] ??= new Peer($name);
    }

    /** Stops every peer started so far. */
    public static function stopAll(): void
    {
        foreach (self::$peers as $peer) {
            $peer->stop();
        }
        self::$peers = [];
    }

    /**
     * A runtime with these options, shared across tests.
     *
     * @param array<string, mixed> $options
     */
    public static function runtime(array $options = []): Runtime
    {
        $key = json_encode($options);
        return self::$runtimes[$key] ??= new Runtime($options);
    }

    public static function logDir(): string
    {
        $dir = dirname(__DIR__, 4) . '/target/peers/logs';
        if (!is_dir($dir)) {
            @mkdir($dir, 0o775, true);
        }
        return $dir;
    }

    /** A fresh temporary directory, removed at the end of the run. */
    public static function tempDir(string $name): string
    {
        $dir = sys_get_temp_dir() . "/scim-php-tests-" . getmypid() . "/{$name}-" . bin2hex(random_bytes(4));
        mkdir($dir, 0o700, true);
        return $dir;
    }

    public static function removeTempDirs(): void
    {
        $root = sys_get_temp_dir() . '/scim-php-tests-' . getmypid();
        if (!is_dir($root)) {
            return;
        }
        $it = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($root, \FilesystemIterator::SKIP_DOTS), \RecursiveIteratorIterator::CHILD_FIRST);
        foreach ($it as $f) {
            $f->isDir() ? @rmdir($f->getPathname()) : @unlink($f->getPathname());
        }
        @rmdir($root);
    }
}
