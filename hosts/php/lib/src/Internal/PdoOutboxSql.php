<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\OutboxSql;

/**
 * {@see OutboxSql} over a PDO connection to MySQL/MariaDB or PostgreSQL. Values are bound
 * with their PHP type (an int as an integer: MySQL refuses `LIMIT '10'`).
 *
 * @internal
 */
final class PdoOutboxSql implements OutboxSql
{
    public function __construct(private readonly \PDO $pdo)
    {
    }

    public function dialect(): string
    {
        return (string) $this->pdo->getAttribute(\PDO::ATTR_DRIVER_NAME);
    }

    public function begin(): void
    {
        if ($this->dialect() === 'mysql') {
            // For the next transaction only; PostgreSQL's default is read committed already.
            $this->pdo->exec('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
        }
        $this->pdo->beginTransaction();
    }

    public function commit(): void
    {
        $this->pdo->commit();
    }

    public function rollback(): void
    {
        if ($this->pdo->inTransaction()) {
            $this->pdo->rollBack();
        }
    }

    public function select(string $sql, array $params = []): array
    {
        $stmt = $this->run($sql, $params);
        /** @var list<array<string, mixed>> */
        return $stmt->fetchAll(\PDO::FETCH_ASSOC);
    }

    public function execute(string $sql, array $params = []): int
    {
        return $this->run($sql, $params)->rowCount();
    }

    public function isRetryable(\Throwable $e): bool
    {
        if (!$e instanceof \PDOException) {
            return false;
        }
        // 40001 serialization failure (and MySQL's deadlock, errno 1213), 40P01 PostgreSQL's
        // deadlock, 57014 a statement cancelled (the claim's statement timeout), 55P03 a lock
        // not available (lock_timeout): the transaction is rolled back.
        if (in_array((string) $e->getCode(), ['40001', '40P01', '57014', '55P03'], true)) {
            return true;
        }
        // MySQL/MariaDB (SQLSTATE HY000 or 70100, told apart by the server's errno): 1205 a
        // lock wait timeout (the statement is rolled back; callers roll back the rest), 1969
        // MariaDB's max_statement_time, 3024 MySQL's max_execution_time.
        return $this->dialect() === 'mysql'
            && in_array((int) ($e->errorInfo[1] ?? 0), [1205, 1969, 3024], true);
    }

    /**
     * Prepares $sql to run in one round trip. On PostgreSQL PDO would otherwise prepare a
     * named statement on the server, execute it and deallocate it (three round trips for a
     * statement run once); PDO::PGSQL_ATTR_DISABLE_PREPARES sends the query and its values
     * together (PQexecParams), still bound apart from the SQL. MySQL's PDO emulates prepares
     * in one round trip already.
     */
    public static function prepareOn(\PDO $pdo, string $sql): \PDOStatement
    {
        return $pdo->getAttribute(\PDO::ATTR_DRIVER_NAME) === 'pgsql'
            ? $pdo->prepare($sql, [\PDO::PGSQL_ATTR_DISABLE_PREPARES => true])
            : $pdo->prepare($sql);
    }

    /**
     * PostgreSQL: runs $settings (a `SELECT` of `set_config(…, true)` calls) and then $sql as
     * one simple-query message, and returns $sql's rows; null, having run nothing, inside an
     * open transaction (the settings would last for the rest of it). One round trip: the
     * message is one implicit transaction, committed at its end, so the settings last for
     * $sql and no longer; and each statement of a message is planned only when it runs, so
     * $sql is planned under them (a timeout set there applies to $sql alone). The values are
     * quoted into the SQL by PDO (an emulated prepare; PQexecParams takes one statement only),
     * with the connection's own escaping.
     *
     * @param list<int|string|null> $params
     * @return list<array<string, mixed>>|null
     */
    public function selectUnder(string $settings, string $sql, array $params): ?array
    {
        if ($this->pdo->inTransaction()) {
            return null;
        }
        $stmt = $this->pdo->prepare("{$settings}; {$sql}", [\PDO::ATTR_EMULATE_PREPARES => true]);
        $this->bind($stmt, $params)->execute();
        /** @var list<array<string, mixed>> */
        return $stmt->fetchAll(\PDO::FETCH_ASSOC);
    }

    /** @param list<int|string|null> $params */
    private function run(string $sql, array $params): \PDOStatement
    {
        $stmt = $this->bind(self::prepareOn($this->pdo, $sql), $params);
        $stmt->execute();
        return $stmt;
    }

    /**
     * Binds $params with their PHP type (an int as an integer).
     *
     * @param list<int|string|null> $params
     */
    private function bind(\PDOStatement $stmt, array $params): \PDOStatement
    {
        foreach ($params as $i => $value) {
            $type = match (true) {
                is_int($value) => \PDO::PARAM_INT,
                $value === null => \PDO::PARAM_NULL,
                default => \PDO::PARAM_STR,
            };
            $stmt->bindValue($i + 1, $value, $type);
        }
        return $stmt;
    }
}
