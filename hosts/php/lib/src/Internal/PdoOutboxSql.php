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
        // 40001 serialization failure (and MySQL's deadlock, errno 1213), 40P01 PostgreSQL's deadlock.
        return $e instanceof \PDOException && in_array((string) $e->getCode(), ['40001', '40P01'], true);
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

    /** @param list<int|string|null> $params */
    private function run(string $sql, array $params): \PDOStatement
    {
        $stmt = self::prepareOn($this->pdo, $sql);
        foreach ($params as $i => $value) {
            $type = match (true) {
                is_int($value) => \PDO::PARAM_INT,
                $value === null => \PDO::PARAM_NULL,
                default => \PDO::PARAM_STR,
            };
            $stmt->bindValue($i + 1, $value, $type);
        }
        $stmt->execute();
        return $stmt;
    }
}
