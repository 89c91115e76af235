<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\InvalidArgumentException;

/**
 * Creates and migrates a store's tables on MySQL/MariaDB or PostgreSQL, step by step, and
 * records the version reached in `{prefix}schema` (one row per store: `directory`,
 * `outbox`). Processes opening the same database at once migrate it once: the steps run
 * under a database-wide lock (`GET_LOCK` / `pg_advisory_lock`), and each re-reads the
 * version under it.
 *
 * @internal
 */
final class PdoSchema
{
    /**
     * Brings the store $name up to the last step; returns the version now recorded.
     *
     * @param array<int, list<string>> $steps version => its statements, for this connection's dialect
     */
    public static function migrate(\PDO $pdo, string $prefix, string $name, array $steps): int
    {
        $driver = self::driver($pdo);
        $table = $prefix . 'schema';
        $lockKey = $prefix . 'schema:' . $name;
        if ($driver === 'pgsql') {
            // A 64-bit key from the name: processes of one site agree on it.
            $key = unpack('J', substr(hash('sha256', $lockKey, true), 0, 8))[1];
            $pdo->prepare('SELECT pg_advisory_lock(?)')->execute([$key]);
            $unlock = static fn () => $pdo->prepare('SELECT pg_advisory_unlock(?)')->execute([$key]);
        } else {
            $stmt = $pdo->prepare('SELECT GET_LOCK(?, 60)');
            $stmt->execute([$lockKey]);
            if ((int) $stmt->fetchColumn() !== 1) {
                throw new \RuntimeException("another process held the schema lock of {$name} for 60 s");
            }
            $unlock = static fn () => $pdo->prepare('SELECT RELEASE_LOCK(?)')->execute([$lockKey]);
        }
        try {
            $pdo->exec("CREATE TABLE IF NOT EXISTS {$table} (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                version INTEGER NOT NULL,
                migrated_at BIGINT NOT NULL
            )");
            $stmt = $pdo->prepare("SELECT version FROM {$table} WHERE name = ?");
            $stmt->execute([$name]);
            $current = (int) ($stmt->fetchColumn() ?: 0);
            ksort($steps);
            $last = $current;
            foreach ($steps as $version => $statements) {
                if ($version <= $current) {
                    continue;
                }
                // PostgreSQL runs a step's DDL in one transaction; MySQL commits each DDL statement
                // itself, so its steps are written to be re-runnable (IF NOT EXISTS).
                $own = $driver === 'pgsql';
                if ($own) {
                    $pdo->beginTransaction();
                }
                try {
                    foreach ($statements as $sql) {
                        $pdo->exec($sql);
                    }
                    $record = $current === 0 && $last === 0
                        ? "INSERT INTO {$table} (version, migrated_at, name) VALUES (?, ?, ?)"
                        : "UPDATE {$table} SET version = ?, migrated_at = ? WHERE name = ?";
                    $pdo->prepare($record)->execute([$version, time(), $name]);
                    if ($own) {
                        $pdo->commit();
                    }
                } catch (\Throwable $e) {
                    if ($own && $pdo->inTransaction()) {
                        $pdo->rollBack();
                    }
                    throw $e;
                }
                $last = $version;
            }
            return $last;
        } finally {
            $unlock();
        }
    }

    /** The recorded version of the store $name, 0 when none. */
    public static function version(\PDO $pdo, string $prefix, string $name): int
    {
        try {
            $stmt = $pdo->prepare("SELECT version FROM {$prefix}schema WHERE name = ?");
            $stmt->execute([$name]);
            return (int) ($stmt->fetchColumn() ?: 0);
        } catch (\PDOException) {
            return 0;
        }
    }

    /** `mysql` or `pgsql`; anything else is refused. */
    public static function driver(\PDO $pdo): string
    {
        $driver = (string) $pdo->getAttribute(\PDO::ATTR_DRIVER_NAME);
        if (!in_array($driver, ['mysql', 'pgsql'], true)) {
            throw new InvalidArgumentException(
                "this store needs a PDO connection to MySQL/MariaDB (mysql:) or PostgreSQL (pgsql:), not {$driver}:"
                . ' (PdoSqliteDirectory serves SQLite)',
            );
        }
        return $driver;
    }

    /** Checks a table prefix: a plain SQL identifier start. */
    public static function prefix(string $prefix): string
    {
        if (!preg_match('/^[A-Za-z_][A-Za-z0-9_]{0,31}$/', $prefix)) {
            throw new InvalidArgumentException("the table prefix must be a plain SQL identifier, not {$prefix}");
        }
        return $prefix;
    }
}
