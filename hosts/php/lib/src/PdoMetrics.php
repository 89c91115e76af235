<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * Counters kept in a database table (one row per metric and label set), so every PHP process
 * adds to the same numbers (issue 31, part 3). Each add is one atomic upsert
 * (`value = value + …`: SQLite and PostgreSQL `ON CONFLICT`, MySQL/MariaDB
 * `ON DUPLICATE KEY`), so concurrent processes never lose an increment; inside the caller's
 * transaction it commits or rolls back with it. Rendered by {@see PrometheusText}.
 *
 * Labels must never hold a secret or a user's data: a target is an origin, a status an HTTP
 * status, an action the component's action.
 */
final class PdoMetrics
{
    private readonly string $driver;

    public function __construct(private readonly \PDO $db, private readonly string $table = 'scim_metrics')
    {
        if (!preg_match('/^[A-Za-z_][A-Za-z0-9_]{0,63}$/', $table)) {
            throw new InvalidArgumentException('the metrics table name must be a plain SQL identifier');
        }
        $this->driver = (string) $db->getAttribute(\PDO::ATTR_DRIVER_NAME);
    }

    /** Creates the table when it is missing. */
    public function install(): void
    {
        $double = $this->driver === 'mysql' ? 'DOUBLE' : 'DOUBLE PRECISION';
        $this->db->exec(
            "CREATE TABLE IF NOT EXISTS {$this->table} (metric VARCHAR(64) NOT NULL,"
            . " labels VARCHAR(191) NOT NULL DEFAULT '', value {$double} NOT NULL DEFAULT 0,"
            . ' PRIMARY KEY (metric, labels))'
        );
    }

    /** Adds $by to a counter. */
    public function add(string $metric, array $labels, float $by = 1.0): void
    {
        $update = $this->driver === 'mysql'
            ? 'ON DUPLICATE KEY UPDATE value = value + VALUES(value)'
            : "ON CONFLICT (metric, labels) DO UPDATE SET value = {$this->table}.value + excluded.value";
        $this->db->prepare("INSERT INTO {$this->table} (metric, labels, value) VALUES (?, ?, ?) {$update}")
            ->execute([$metric, substr(PrometheusText::labelText($labels), 0, 191), $by]);
    }

    /** @return list<array{metric: string, labels: string, value: float}> every stored row */
    public function rows(): array
    {
        $rows = [];
        $stmt = $this->db->query("SELECT metric, labels, value FROM {$this->table}", \PDO::FETCH_ASSOC);
        foreach ($stmt as $r) {
            $rows[] = [
                'metric' => (string) $r['metric'],
                'labels' => (string) $r['labels'],
                'value' => (float) $r['value'],
            ];
        }
        return $rows;
    }
}
