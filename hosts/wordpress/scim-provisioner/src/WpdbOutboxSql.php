<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\OutboxSql;

/**
 * The library's {@see OutboxSql} over WordPress's `$wpdb` (MySQL/MariaDB), so the plugin's
 * outbox claims with the same code as the library's PdoOutbox ({@see \ScimProvisioner\OutboxClaims}).
 * Every value goes through `$wpdb->prepare` (`?` becomes `%d` or `%s` by the value's type;
 * null is the literal NULL).
 */
final class WpdbOutboxSql implements OutboxSql
{
    public function dialect(): string
    {
        return 'mysql';
    }

    public function begin(): void
    {
        // For the next transaction only: a claim reads what other workers committed.
        $this->run('SET TRANSACTION ISOLATION LEVEL READ COMMITTED', []);
        $this->run('START TRANSACTION', []);
    }

    public function commit(): void
    {
        $this->run('COMMIT', []);
    }

    public function rollback(): void
    {
        global $wpdb;
        $wpdb->query('ROLLBACK');
    }

    public function select(string $sql, array $params = []): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($this->prepare($sql, $params), ARRAY_A);
        if ($wpdb->last_error !== '' || !is_array($rows)) {
            throw self::error($wpdb->last_error);
        }
        return array_values($rows);
    }

    public function execute(string $sql, array $params = []): int
    {
        return $this->run($sql, $params);
    }

    public function isRetryable(\Throwable $e): bool
    {
        // ER_LOCK_DEADLOCK (1213); $wpdb reports only the message.
        return $e->getCode() === 1213;
    }

    /** @param list<int|string|null> $params */
    private function run(string $sql, array $params): int
    {
        global $wpdb;
        $result = $wpdb->query($this->prepare($sql, $params));
        if ($result === false) {
            throw self::error($wpdb->last_error);
        }
        return (int) $result;
    }

    /** @param list<int|string|null> $params */
    private function prepare(string $sql, array $params): string
    {
        global $wpdb;
        if ($params === []) {
            return $sql;
        }
        $values = [];
        $i = 0;
        $query = (string) preg_replace_callback('/\?/', static function () use ($params, &$i, &$values): string {
            $value = $params[$i++] ?? null;
            if ($value === null) {
                return 'NULL';
            }
            $values[] = $value;
            return is_int($value) ? '%d' : '%s';
        }, $sql);
        if ($i !== count($params)) {
            throw new \LogicException('the outbox SQL and its values do not match');
        }
        // The SQL is the library's own, with a placeholder for every value.
        return $values === [] ? $query : (string) $wpdb->prepare($query, ...$values);
    }

    private static function error(string $message): \RuntimeException
    {
        $code = str_contains($message, 'Deadlock found') ? 1213 : 0;
        return new \RuntimeException('the outbox could not be read or written: ' . $message, $code);
    }
}
