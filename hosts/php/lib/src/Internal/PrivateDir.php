<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

/**
 * @internal Folders and files only their owner can write (issue 28, finding 1).
 *
 * State (SQLite files, sessions, token files) and caches (precompiled `.cwasm` files that
 * the bridge maps as native code) must not sit in a folder another local user created
 * first or can write: such a user could plant an admin row, a token or native code. So a
 * folder is created `0700`, and one that exists must belong to this process's user and be
 * writable by nobody else; otherwise it is refused with a message that says what to do.
 */
final class PrivateDir
{
    /**
     * Creates $path (and missing parents) `0700`, or checks the one that exists.
     *
     * @param string $what what the folder is for, for the message ("the site's state")
     * @return string the real path
     * @throws \RuntimeException when it cannot be created or is not private
     */
    public static function ensure(string $path, string $what): string
    {
        if ($path === '') {
            throw new \RuntimeException("{$what}: no folder given");
        }
        if (!file_exists($path) && !is_link($path)) {
            $old = umask(0o077);
            try {
                if (!@mkdir($path, 0o700, true) && !is_dir($path)) {
                    $reason = error_get_last()['message'] ?? 'unknown error';
                    throw new \RuntimeException("{$what}: cannot create the folder {$path}: {$reason}");
                }
            } finally {
                umask($old);
            }
        }
        $problem = self::problem($path);
        if ($problem !== null) {
            throw new \RuntimeException("{$what}: refusing the folder {$path}: {$problem}");
        }
        return (string) realpath($path);
    }

    /**
     * Why $path is not a private folder of this process's user, or null when it is.
     */
    public static function problem(string $path): ?string
    {
        clearstatcache(true, $path);
        $link = @lstat($path);
        if ($link === false) {
            return 'it does not exist';
        }
        $uid = self::uid();
        if (is_link($path) && $uid !== null && $link['uid'] !== $uid) {
            return "it is a symbolic link owned by user {$link['uid']}, not by this user ({$uid})";
        }
        $stat = @stat($path);
        if ($stat === false || !is_dir($path)) {
            return 'it is not a folder';
        }
        if ($uid !== null && $stat['uid'] !== $uid) {
            return "it belongs to user {$stat['uid']}, not to this user ({$uid}); another user may have "
                . 'created it first. Use a folder of your own (remove this one if you trust it)';
        }
        if (($stat['mode'] & 0o022) !== 0) {
            return sprintf(
                'it is writable by %s (mode %04o); make it private with chmod 700',
                implode(' and ', array_keys(array_filter(
                    ['its group' => ($stat['mode'] & 0o020) !== 0, 'other users' => ($stat['mode'] & 0o002) !== 0],
                ))),
                $stat['mode'] & 0o7777,
            );
        }
        return null;
    }

    /**
     * A fresh private folder under $parent (default the system temp folder), like mkdtemp(3):
     * a random name created with `mkdir`, which fails rather than reuse a folder that exists.
     */
    public static function fresh(string $prefix, ?string $parent = null): string
    {
        $parent ??= sys_get_temp_dir();
        $old = umask(0o077);
        try {
            for ($attempt = 0; $attempt < 16; $attempt++) {
                $path = rtrim($parent, '/') . '/' . $prefix . bin2hex(random_bytes(8));
                if (@mkdir($path, 0o700)) {
                    return (string) realpath($path);
                }
            }
        } finally {
            umask($old);
        }
        $reason = error_get_last()['message'] ?? 'unknown error';
        throw new \RuntimeException("cannot create a temporary folder in {$parent}: {$reason}");
    }

    /**
     * The per-user state folder for $name: `$XDG_STATE_HOME/scim-provisioner/$name`, else
     * `~/.local/state/scim-provisioner/$name` (not created here).
     */
    public static function userStateDir(string $name): string
    {
        $base = getenv('XDG_STATE_HOME');
        if ($base === false || $base === '' || $base[0] !== '/') {
            $home = getenv('HOME');
            $uid = self::uid();
            if (($home === false || $home === '') && $uid !== null && function_exists('posix_getpwuid')) {
                $home = (string) (posix_getpwuid($uid)['dir'] ?? '');
            }
            if ($home === false || $home === '') {
                throw new \RuntimeException(
                    'cannot find a per-user folder: set HOME or XDG_STATE_HOME, or pass a folder'
                );
            }
            $base = rtrim($home, '/') . '/.local/state';
        }
        return rtrim($base, '/') . "/scim-provisioner/{$name}";
    }

    /**
     * Writes a new file `0600` from its creation (it must not exist), checking every step.
     *
     * @throws \RuntimeException when it exists or cannot be written in full
     */
    public static function writeNewFile(string $path, string $contents): void
    {
        $old = umask(0o077);
        try {
            $handle = @fopen($path, 'x');
        } finally {
            umask($old);
        }
        if ($handle === false) {
            $reason = error_get_last()['message'] ?? 'unknown error';
            throw new \RuntimeException("cannot create {$path}: {$reason}");
        }
        $written = @fwrite($handle, $contents);
        $flushed = @fflush($handle);
        $closed = @fclose($handle);
        if ($written !== strlen($contents) || !$flushed || !$closed) {
            @unlink($path);
            throw new \RuntimeException("cannot write {$path} in full (disk full?)");
        }
    }

    private static function uid(): ?int
    {
        return function_exists('posix_geteuid') ? posix_geteuid() : null;
    }
}
