<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The provisioning log (`{prefix}scim_log`): one row per delivery, manual provisioning or
 * sync result. Messages come from the component, which never puts a secret in them.
 */
final class LogRepository
{
    /** Rows older than this are removed by the daily clean-up. */
    public const KEEP_DAYS = 30;
    private const COLUMNS = 'SELECT id, at, user_id, user_login, operation, outcome, status, message';

    private readonly string $table;

    public function __construct()
    {
        $this->table = Schema::tables()['log'];
    }

    public function add(
        int $userId,
        string $userLogin,
        string $operation,
        string $outcome,
        ?int $status,
        ?string $message,
        int $durationMs,
    ): int {
        global $wpdb;
        $row = [
            'at' => time(),
            'user_id' => $userId,
            'user_login' => mb_substr($userLogin, 0, 60),
            'operation' => mb_substr($operation, 0, 20),
            'outcome' => mb_substr($outcome, 0, 20),
            'message' => $message,
            'duration_ms' => $durationMs,
        ];
        $formats = ['%d', '%d', '%s', '%s', '%s', '%s', '%d'];
        if ($status !== null) {
            $row['status'] = $status;
            $formats[] = '%d';
        }
        if ($wpdb->insert($this->table, $row, $formats) === false) {
            throw new \RuntimeException('the provisioning log could not be written: ' . $wpdb->last_error);
        }
        return (int) $wpdb->insert_id;
    }

    /**
     * Adds several rows in one statement (a sync batch's).
     *
     * @param list<array{user_id: int, user_login: string, operation: string, outcome: string, status: ?int,
     *     message: ?string, duration_ms: int}> $rows
     */
    public function addMany(array $rows): void
    {
        global $wpdb;
        if ($rows === []) {
            return;
        }
        $values = [];
        $now = time();
        foreach ($rows as $r) {
            // prepare() turns null into '', so NULL is written into the statement itself.
            $args = [$now, $r['user_id'], mb_substr($r['user_login'], 0, 60), mb_substr($r['operation'], 0, 20),
                mb_substr($r['outcome'], 0, 20)];
            $format = '(%d, %d, %s, %s, %s';
            foreach (['status' => '%d', 'message' => '%s'] as $key => $placeholder) {
                if ($r[$key] === null) {
                    $format .= ', NULL';
                } else {
                    $format .= ', ' . $placeholder;
                    $args[] = $r[$key];
                }
            }
            $args[] = $r['duration_ms'];
            $values[] = $wpdb->prepare($format . ', %d)', ...$args);
        }
        $sql = "INSERT INTO {$this->table} (at, user_id, user_login, operation, outcome, status, message, duration_ms)"
            . ' VALUES ' . implode(', ', $values);
        if ($wpdb->query($sql) === false) {
            throw new \RuntimeException('the provisioning log could not be written: ' . $wpdb->last_error);
        }
    }

    /**
     * Newest first.
     *
     * @return list<array{id: int, user_id: int, user_login: string, operation: string, outcome: string, status: ?int,
     *     message: ?string, at: int, retryable: bool}>
     */
    public function page(int $offset, int $limit, bool $failuresOnly): array
    {
        global $wpdb;
        $where = $failuresOnly ? "WHERE outcome = 'failed'" : '';
        $rows = $wpdb->get_results($wpdb->prepare(
            self::COLUMNS . " FROM {$this->table} {$where} ORDER BY id DESC LIMIT %d OFFSET %d",
            max(0, $limit),
            max(0, $offset),
        ), ARRAY_A);
        return array_map(self::typed(...), is_array($rows) ? $rows : []);
    }

    public function count(bool $failuresOnly): int
    {
        global $wpdb;
        $where = $failuresOnly ? " WHERE outcome = 'failed'" : '';
        return (int) $wpdb->get_var("SELECT COUNT(*) FROM {$this->table}{$where}");
    }

    /**
     * @return array{id: int, user_id: int, user_login: string, operation: string, outcome: string, status: ?int,
     *     message: ?string, at: int, retryable: bool}|null
     */
    public function get(int $id): ?array
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare(self::COLUMNS . " FROM {$this->table} WHERE id = %d", $id), ARRAY_A);
        return is_array($row) ? self::typed($row) : null;
    }

    /** The newest row of a user, or null. */
    public function latestForUser(int $userId): ?array
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare(
            self::COLUMNS . " FROM {$this->table} WHERE user_id = %d ORDER BY id DESC LIMIT 1",
            $userId,
        ), ARRAY_A);
        return is_array($row) ? self::typed($row) : null;
    }

    /** Removes rows older than {@see KEEP_DAYS}; returns how many. */
    public function prune(): int
    {
        global $wpdb;
        $before = time() - self::KEEP_DAYS * DAY_IN_SECONDS;
        return (int) $wpdb->query($wpdb->prepare("DELETE FROM {$this->table} WHERE at < %d", $before));
    }

    /**
     * @param array<string, mixed> $row
     * @return array{id: int, user_id: int, user_login: string, operation: string, outcome: string, status: ?int,
     *     message: ?string, at: int, retryable: bool}
     */
    private static function typed(array $row): array
    {
        $userId = (int) $row['user_id'];
        return [
            'id' => (int) $row['id'],
            'user_id' => $userId,
            'user_login' => (string) $row['user_login'],
            'operation' => (string) $row['operation'],
            'outcome' => (string) $row['outcome'],
            'status' => $row['status'] === null ? null : (int) $row['status'],
            'message' => $row['message'] === null ? null : (string) $row['message'],
            'at' => (int) $row['at'],
            // A failure about a user can be retried: the retry sends the user as they are now.
            'retryable' => $row['outcome'] === 'failed' && $userId > 0,
        ];
    }
}
