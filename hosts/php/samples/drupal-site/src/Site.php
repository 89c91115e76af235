<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite;

use ScimProvisioner\BatchItem;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Concurrent;
use ScimProvisioner\Connector;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Link;
use ScimProvisioner\Logger;
use ScimProvisioner\PdoMetrics;
use ScimProvisioner\PlannedAction;
use ScimProvisioner\PrometheusText;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\ProvisionOutcome;
use ScimProvisioner\Runtime;
use ScimProvisioner\ServerCapabilities;
use ScimProvisioner\UserEvent;

/**
 * The Drupal-like sample site: users in SQLite through PDO, provisioned to a SCIM server
 * through the scim-provisioner component.
 *
 * - Every user change and its outbox event are written in one transaction (a transactional
 *   outbox), then delivered at once (automatic provisioning). A failed delivery stays in the
 *   outbox with its reason and retry time (the component's retry class), or is parked when
 *   it cannot succeed by retrying; nothing is lost.
 * - `provision()` provisions one user on demand; `sync()` is the scheduled full reconcile:
 *   it drains the outbox, skips users whose fingerprint did not change, lists the remote
 *   users once for a first sync, and sends the rest through provisionBatch (bulk where the
 *   server has it), on several connectors at once through curl_multi.
 *
 * @phpstan-type UserRow array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}
 * @phpstan-type SiteConfig array{connector: array<string, mixed>, database: string, max_attempts?: int,
 *     batch_size?: int, concurrency?: int, deprovision_threshold?: string}
 */
final class Site
{
    public const SCHEMA = <<<'SQL'
        CREATE TABLE IF NOT EXISTS users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            mail TEXT NOT NULL,
            fields TEXT NOT NULL DEFAULT '{}',
            active INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE IF NOT EXISTS links (
            user_id TEXT PRIMARY KEY,
            remote_id TEXT NOT NULL,
            version TEXT,
            snapshot TEXT,
            fingerprint TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            event TEXT NOT NULL,
            user_json TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            parked INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS outbox_user ON outbox(user_id, seq);
        CREATE TABLE IF NOT EXISTS log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            user_id TEXT NOT NULL,
            operation TEXT NOT NULL,
            outcome TEXT NOT NULL,
            http_status INTEGER,
            error TEXT,
            duration_ms INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS log_user ON log(user_id, id);
        SQL;

    /**
     * The counters kept in the site's database (issue 31, part 3; docs/metrics.md), the
     * families the WordPress plugin serves less the server role's (this site is a client).
     */
    public const METRIC_FAMILIES = [
        'scim_users_provisioned_total' => ['counter', 'Users provisioned by the client role, by action and result'],
        'scim_client_requests_total' => ['counter', 'Requests the client role sent in syncs, by target'],
        'scim_client_retries_total' => ['counter', 'Outbox deliveries that failed and were scheduled again, by reason'],
        'scim_outbox_depth' => ['gauge', 'Outbox events waiting for delivery (parked ones not included)'],
        'scim_outbox_parked' => ['gauge', 'Outbox events parked after failing for good'],
        'scim_syncs_total' => ['counter', 'Syncs run, by result'],
    ];

    public readonly \PDO $db;
    public readonly PdoMetrics $metrics;
    private ?Connector $connector = null;
    private readonly string $policyJson;
    /** @var list<array{action: string, user_id: string, name: string, reason: ?string}> the last sync plan, row by row */
    public array $lastPlan = [];

    /**
     * @param array{connector: array<string, mixed>, database: string, max_attempts?: int, batch_size?: int,
     *     concurrency?: int, deprovision_threshold?: string} $config
     */
    public function __construct(private readonly Runtime $runtime, private readonly array $config, private readonly Logger $logger)
    {
        $this->db = new \PDO('sqlite:' . $config['database']);
        $this->db->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        $this->db->exec('PRAGMA busy_timeout = 10000');
        $this->db->exec('PRAGMA journal_mode = WAL');
        $this->db->exec(self::SCHEMA);
        $this->metrics = new PdoMetrics($this->db);
        $this->metrics->install();
        $policy = $config['connector']['policy'] ?? '';
        $this->policyJson = is_array($policy) ? (string) json_encode($policy) : (string) $policy;
    }

    /**
     * Reads the site configuration: a JSON file, then the environment (SCIM_BASE_URL,
     * SCIM_TOKEN, DRUPAL_SITE_DB) on top.
     *
     * @return array{connector: array<string, mixed>, database: string, max_attempts: int, batch_size: int,
     *     concurrency: int, deprovision_threshold: string}
     */
    public static function loadConfig(?string $file): array
    {
        $config = [];
        if ($file !== null) {
            $text = @file_get_contents($file);
            if ($text === false) {
                throw new \RuntimeException("cannot read the configuration {$file}");
            }
            $config = json_decode($text, true);
            if (!is_array($config)) {
                throw new \RuntimeException("{$file} is not a JSON object");
            }
        }
        $config['connector'] ??= [];
        if (($url = getenv('SCIM_BASE_URL')) !== false && $url !== '') {
            $config['connector']['base_url'] = $url;
        }
        if (($token = getenv('SCIM_TOKEN')) !== false && $token !== '' && !isset($config['connector']['token_env'])) {
            $config['connector']['token'] = $token;
        }
        if (($db = getenv('DRUPAL_SITE_DB')) !== false && $db !== '') {
            $config['database'] = $db;
        }
        if (!isset($config['connector']['base_url'])) {
            throw new \RuntimeException('no SCIM base URL: set connector.base_url in the configuration file or SCIM_BASE_URL');
        }
        $base = $file !== null ? dirname($file) : getcwd();
        $db = $config['database'] ?? 'drupal-site.db';
        if (!str_starts_with($db, '/')) {
            $db = $base . '/' . $db;
        }
        return [
            'connector' => $config['connector'],
            'database' => $db,
            'max_attempts' => (int) ($config['max_attempts'] ?? 8),
            'batch_size' => max(1, min(1000, (int) ($config['batch_size'] ?? 100))),
            'concurrency' => max(1, min(16, (int) ($config['concurrency'] ?? 4))),
            'deprovision_threshold' => (string) ($config['deprovision_threshold'] ?? '10%'),
        ];
    }

    /** The connector, opened on first use. */
    public function connector(): Connector
    {
        return $this->connector ??= Connector::open($this->runtime, $this->config['connector'], null, $this->logger);
    }

    public function testConnection(): ServerCapabilities
    {
        return $this->connector()->testConnection();
    }

    // ---------------------------------------------------------------- users

    /**
     * Adds a user and queues its `created` event in one transaction, then delivers it.
     *
     * @param array<string, mixed> $fields
     * @return array{0: array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}, 1: string}
     *     the user and what delivery said
     */
    public function addUser(string $name, string $mail, array $fields = [], bool $active = true): array
    {
        if (trim($name) === '') {
            throw new \InvalidArgumentException('a user needs a name');
        }
        $user = $this->inTransaction(function () use ($name, $mail, $fields, $active): array {
            $exists = $this->db->prepare('SELECT id FROM users WHERE name = ? COLLATE NOCASE');
            $exists->execute([$name]);
            if ($exists->fetchColumn() !== false) {
                throw new \InvalidArgumentException("a user named {$name} already exists");
            }
            $this->db->prepare('INSERT INTO users (name, mail, fields, active) VALUES (?, ?, ?, ?)')
                ->execute([$name, $mail, json_encode((object) $fields, JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR), $active ? 1 : 0]);
            $user = $this->user((string) $this->db->lastInsertId()) ?? throw new \LogicException('inserted user vanished');
            $this->enqueue($user, UserEvent::Created);
            return $user;
        });
        return [$user, $this->deliverIfAutomatic($user['id'])];
    }

    /**
     * Changes a user (updated, blocked, unblocked) or deletes it, with its event in the same
     * transaction; then delivers.
     *
     * @param callable(array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}): array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool} $change
     * @return array{0: array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}, 1: string}
     */
    public function changeUser(string $needle, UserEvent $event, callable $change): array
    {
        $user = $this->inTransaction(function () use ($needle, $event, $change): array {
            $user = $change($this->findUser($needle));
            if ($event === UserEvent::Deleted) {
                $this->db->prepare('DELETE FROM users WHERE id = ?')->execute([$user['id']]);
            } else {
                $this->db->prepare('UPDATE users SET name = ?, mail = ?, fields = ?, active = ? WHERE id = ?')->execute([
                    $user['name'], $user['mail'], json_encode((object) $user['fields'], JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR),
                    $user['active'] ? 1 : 0, $user['id'],
                ]);
            }
            $this->enqueue($user, $event);
            return $user;
        });
        return [$user, $this->deliverIfAutomatic($user['id'])];
    }

    /** Automatic provisioning (config `automatic`, default on) delivers at once; otherwise the event waits for a sync. */
    private function deliverIfAutomatic(string $userId): string
    {
        return ($this->config['automatic'] ?? true) ? $this->deliver($userId) : 'queued (automatic provisioning is off; the next sync delivers it)';
    }

    /**
     * A user by id, name or email.
     *
     * @return array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}
     */
    public function findUser(string $needle): array
    {
        $stmt = $this->db->prepare('SELECT * FROM users WHERE CAST(id AS TEXT) = ? OR name = ? COLLATE NOCASE OR mail = ? COLLATE NOCASE');
        $stmt->execute([$needle, $needle, $needle]);
        $rows = $stmt->fetchAll(\PDO::FETCH_ASSOC);
        if (count($rows) !== 1) {
            throw new \InvalidArgumentException(count($rows) === 0 ? "no user {$needle}" : "{$needle} names several users; use the id");
        }
        return self::row($rows[0]);
    }

    /** @return array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}|null */
    public function user(string $id): ?array
    {
        $stmt = $this->db->prepare('SELECT * FROM users WHERE id = ?');
        $stmt->execute([$id]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC);
        return $row === false ? null : self::row($row);
    }

    /** @return list<array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}> */
    public function users(): array
    {
        return array_map(self::row(...), $this->db->query('SELECT * FROM users ORDER BY id')->fetchAll(\PDO::FETCH_ASSOC));
    }

    /** @return array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: string}|null */
    public function link(string $userId): ?array
    {
        $stmt = $this->db->prepare('SELECT remote_id, version, snapshot, fingerprint FROM links WHERE user_id = ?');
        $stmt->execute([$userId]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC);
        return $row === false ? null : $row;
    }

    // ---------------------------------------------------------------- provisioning

    /** Provisions one user now (on demand), as a reconcile; stores the link. */
    public function provision(string $needle): ProvisionOutcome
    {
        $user = $this->findUser($needle);
        $started = hrtime(true);
        try {
            $outcome = $this->connector()->provision(self::cmsUser($user), UserEvent::Reconcile, $this->linkOf($user['id']));
        } catch (ProvisioningException $e) {
            $this->log($user['id'], 'manual', 'failed', $started, $e->status, $e->getMessage());
            throw $e;
        }
        $this->saveLink($user['id'], $outcome->link, $this->fingerprint($user));
        $this->log($user['id'], 'manual', $outcome->action->value, $started, null, $outcome->reason);
        return $outcome;
    }

    /** What provisioning one user would do, without a request. */
    public function plan(string $needle): \ScimProvisioner\Plan
    {
        $user = $this->findUser($needle);
        return $this->connector()->plan(self::cmsUser($user), UserEvent::Reconcile, $this->link($user['id']) !== null);
    }

    /**
     * Delivers the due outbox events (all users, or one), oldest first per user; a user's
     * later events wait behind an earlier one that is being retried. A parked one holds no
     * one up: its retry sends the user as they are then (requeueAsNow), so it can never
     * land older values after newer ones. Returns a short report of the last
     * event's outcome.
     */
    public function deliver(?string $userId = null, bool $ignoreRetryTimes = false): string
    {
        $last = 'nothing due';
        $tried = [];
        while (true) {
            $sql = 'SELECT o.* FROM outbox o WHERE parked = 0 AND seq = (SELECT MIN(seq) FROM outbox WHERE user_id = o.user_id AND parked = 0)';
            $args = [];
            if (!$ignoreRetryTimes) {
                $sql .= ' AND next_attempt_at <= ?';
                $args[] = time();
            }
            if ($userId !== null) {
                $sql .= ' AND user_id = ?';
                $args[] = $userId;
            }
            $stmt = $this->db->prepare($sql . ' ORDER BY seq');
            $stmt->execute($args);
            $events = array_values(array_filter($stmt->fetchAll(\PDO::FETCH_ASSOC), static fn (array $e): bool => !isset($tried[$e['seq']])));
            if ($events === []) {
                return $last;
            }
            foreach ($events as $event) {
                $tried[$event['seq']] = true;
                $last = $this->deliverOne($event);
            }
        }
    }

    /**
     * The scheduled full reconcile.
     *
     * @return array<string, int> counts by outcome, plus requests and bulk_requests; with
     *     $planOnly, the planned actions' counts and how many users are unchanged
     */
    public function sync(bool $planOnly = false, bool $allowDeletes = false): array
    {
        if (!$planOnly) {
            $this->deliver(null, true);
        }
        $links = [];
        foreach ($this->db->query('SELECT user_id, remote_id, version, snapshot, fingerprint FROM links')->fetchAll(\PDO::FETCH_ASSOC) as $l) {
            $links[(string) $l['user_id']] = $l;
        }
        $linked = count($links);
        // Users with changes still queued (retrying, not parked) are the outbox's: their
        // changes go out in order, and an older one must not land after the newer state a
        // reconcile would send (the server would keep a stale value for good).
        // A plan shown before a sync keeps them: the sync's drain sends their changes first.
        $waiting = $planOnly ? [] : array_fill_keys(array_map('strval',
            $this->db->query('SELECT DISTINCT user_id FROM outbox WHERE parked = 0')->fetchAll(\PDO::FETCH_COLUMN)), true);
        $counts = ['created' => 0, 'adopted' => 0, 'updated' => 0, 'unchanged' => 0, 'deactivated' => 0, 'deleted' => 0,
            'skipped' => 0, 'unlinked' => 0, 'failed' => 0, 'waiting' => 0, 'requests' => 0, 'bulk_requests' => 0];
        /** @var list<array{user: array<string, mixed>, event: UserEvent, link: ?array<string, mixed>, planned: PlannedAction, reason: ?string}> $work */
        $work = [];
        $connector = $this->connector();
        foreach ($this->users() as $user) {
            $link = $links[$user['id']] ?? null;
            unset($links[$user['id']]);
            if (isset($waiting[(string) $user['id']])) {
                $counts['waiting']++;
                continue;
            }
            if ($link !== null && $link['fingerprint'] === $this->fingerprint($user)) {
                $counts['unchanged']++;
                continue;
            }
            $plan = $connector->plan(self::cmsUser($user), UserEvent::Reconcile, $link !== null);
            $work[] = ['user' => $user, 'event' => UserEvent::Reconcile, 'link' => $link, 'planned' => $plan->action, 'reason' => $plan->reason];
        }
        // Linked users gone from the CMS were deleted (their event may have been parked).
        foreach ($links as $id => $link) {
            if (isset($waiting[(string) $id])) {
                $counts['waiting']++;
                continue;
            }
            $user = ['id' => (string) $id, 'name' => '', 'mail' => '', 'fields' => [], 'active' => false];
            $plan = $connector->plan(self::cmsUser($user), UserEvent::Deleted, true);
            $work[] = ['user' => $user, 'event' => UserEvent::Deleted, 'link' => $link, 'planned' => $plan->action, 'reason' => $plan->reason];
        }
        if ($planOnly) {
            $planned = ['unchanged' => $counts['unchanged']];
            $this->lastPlan = [];
            foreach ($work as $w) {
                $this->lastPlan[] = ['action' => $w['planned']->value, 'user_id' => (string) $w['user']['id'],
                    'name' => (string) $w['user']['name'], 'reason' => $w['reason']];
                if (PHP_SAPI === 'cli') {
                    printf("%-10s %-6s %s%s\n", $w['planned']->value, $w['user']['id'], $w['user']['name'] === '' ? '(deleted)' : $w['user']['name'],
                    $w['reason'] !== null ? "  ({$w['reason']})" : '');
                }
                $planned[$w['planned']->value] = ($planned[$w['planned']->value] ?? 0) + 1;
            }
            return $planned;
        }
        $deprovisions = count(array_filter($work, static fn (array $w): bool => in_array($w['planned'], [PlannedAction::Deactivate, PlannedAction::Delete], true)));
        $limit = $this->thresholdLimit($linked);
        if (!$allowDeletes && $deprovisions > $limit) {
            throw new \RuntimeException("this sync would deactivate or delete {$deprovisions} users, more than the threshold of {$limit} "
                . "({$linked} linked); nothing was sent. Check with `sync --plan`, then run with --allow-deletes.");
        }
        $skipped = array_filter($work, static fn (array $w): bool => $w['planned'] === PlannedAction::Skip);
        $counts['skipped'] += count($skipped);
        $work = array_values(array_filter($work, static fn (array $w): bool => $w['planned'] !== PlannedAction::Skip));
        if ($work === []) {
            $this->metrics->add('scim_syncs_total', ['result' => 'ok']);
            return $counts;
        }
        // Workers: each its own connector (component instance); each user always on the same one.
        $workers = min($this->config['concurrency'] ?? 4, count($work));
        $connectors = [$connector];
        for ($i = 1; $i < $workers; $i++) {
            $connectors[] = Connector::open($this->runtime, $this->config['connector'], null, $this->logger);
        }
        // A first sync (many creates): list the remote users once; the other workers load the listing.
        $creates = count(array_filter($work, static fn (array $w): bool => $w['planned'] === PlannedAction::Create));
        if ($creates >= 50) {
            try {
                $listing = $connector->indexRemoteUsers();
                $counts['requests'] += $listing->requests;
                $document = $connector->exportRemoteIndex();
                if ($document !== null) {
                    foreach (array_slice($connectors, 1) as $c) {
                        $c->importRemoteIndex($document);
                    }
                }
            } catch (ProvisioningException|GuestTrapException $e) {
                $this->logger->warning('listing the remote users failed; matching looks each user up: ' . $e->getMessage());
            }
        }
        $queues = array_fill(0, $workers, []);
        foreach ($work as $w) {
            $queues[crc32($w['user']['id']) % $workers][] = $w;
        }
        $batchSize = $this->config['batch_size'] ?? 100;
        $chunks = array_map(static fn (array $q): array => array_chunk($q, $batchSize), $queues);
        for ($round = 0; ; $round++) {
            $jobs = [];
            $jobWork = [];
            foreach ($chunks as $worker => $list) {
                if (!isset($list[$round])) {
                    continue;
                }
                $items = array_map(fn (array $w): BatchItem => new BatchItem(self::cmsUser($w['user']), $w['event'], self::toLink($w['link'])), $list[$round]);
                $jobs[] = [$connectors[$worker], $items];
                $jobWork[] = $list[$round];
            }
            if ($jobs === []) {
                break;
            }
            $started = hrtime(true);
            foreach (Concurrent::provisionBatches($jobs) as $j => $result) {
                $this->recordBatch($jobWork[$j], $result, $started, $counts);
            }
        }
        $this->db->prepare("INSERT INTO log (at, user_id, operation, outcome, http_status, error, duration_ms) VALUES (?, '', 'sync', 'done', NULL, ?, 0)")
            ->execute([gmdate('Y-m-d\TH:i:s\Z'), json_encode($counts)]);
        $this->metrics->add('scim_syncs_total', ['result' => $counts['failed'] > 0 ? 'failed' : 'ok']);
        return $counts;
    }

    /**
     * Outbox rows, for `status`.
     *
     * @return list<array<string, mixed>>
     */
    public function outbox(): array
    {
        return $this->db->query('SELECT seq, user_id, event, attempts, next_attempt_at, last_error, parked FROM outbox ORDER BY seq')->fetchAll(\PDO::FETCH_ASSOC);
    }

    /** @return list<array<string, mixed>> */
    public function logTail(int $n = 20): array
    {
        $stmt = $this->db->prepare('SELECT * FROM (SELECT * FROM log ORDER BY id DESC LIMIT ?) ORDER BY id');
        $stmt->execute([$n]);
        return $stmt->fetchAll(\PDO::FETCH_ASSOC);
    }

    /** How many users the site has (SQL, for paging). */
    public function countUsers(): int
    {
        return (int) $this->db->query('SELECT COUNT(*) FROM users')->fetchColumn();
    }

    /**
     * One page of users with their provisioning state: link, last log entry, pending outbox events.
     *
     * @return list<array<string, mixed>>
     */
    public function usersPage(int $offset, int $limit): array
    {
        $stmt = $this->db->prepare(<<<'SQL'
            SELECT u.id, u.name, u.mail, u.fields, u.active, l.remote_id,
                (SELECT outcome FROM log WHERE user_id = CAST(u.id AS TEXT) ORDER BY id DESC LIMIT 1) AS last_outcome,
                (SELECT error FROM log WHERE user_id = CAST(u.id AS TEXT) ORDER BY id DESC LIMIT 1) AS last_error,
                (SELECT at FROM log WHERE user_id = CAST(u.id AS TEXT) ORDER BY id DESC LIMIT 1) AS last_at,
                (SELECT COUNT(*) FROM outbox WHERE user_id = CAST(u.id AS TEXT)) AS pending,
                (SELECT COUNT(*) FROM outbox WHERE user_id = CAST(u.id AS TEXT) AND parked = 1) AS parked
            FROM users u LEFT JOIN links l ON l.user_id = CAST(u.id AS TEXT)
            ORDER BY u.id LIMIT ? OFFSET ?
            SQL);
        $stmt->execute([$limit, $offset]);
        return $stmt->fetchAll(\PDO::FETCH_ASSOC);
    }

    /** Log entries, newest first, with the user's name (SQL paging). */
    public function logPage(int $offset, int $limit, bool $failuresOnly): array
    {
        // Page first, then join the names by primary key (the ids are text in log, integers in users).
        $where = $failuresOnly ? "WHERE outcome = 'failed'" : '';
        $stmt = $this->db->prepare("SELECT g.*, u.name FROM (SELECT * FROM log {$where} ORDER BY id DESC LIMIT ? OFFSET ?) g
            LEFT JOIN users u ON u.id = CAST(g.user_id AS INTEGER) AND g.user_id <> '' ORDER BY g.id DESC");
        $stmt->execute([$limit, $offset]);
        return $stmt->fetchAll(\PDO::FETCH_ASSOC);
    }

    public function countLog(bool $failuresOnly): int
    {
        return (int) $this->db->query('SELECT COUNT(*) FROM log' . ($failuresOnly ? " WHERE outcome = 'failed'" : ''))->fetchColumn();
    }

    /**
     * Retries one queued or parked outbox event now, as the one change its user needs (see
     * requeueAsNow); returns what delivery said.
     */
    public function retryEvent(int $seq): string
    {
        $stmt = $this->db->prepare('SELECT user_id FROM outbox WHERE seq = ?');
        $stmt->execute([$seq]);
        $userId = $stmt->fetchColumn();
        if ($userId === false) {
            throw new \InvalidArgumentException("no queued change {$seq}");
        }
        $userId = (string) $userId;
        if (!$this->requeueAsNow($userId)) {
            return "the queued change of user {$userId} cannot be read; it stays parked";
        }
        return $this->deliver($userId, true);
    }

    /**
     * Retries every user with a parked change, each as retryEvent does.
     *
     * @return array{0: int, 1: string} how many users, and what the last delivery said
     */
    public function retryParked(): array
    {
        $users = $this->db->query('SELECT user_id FROM outbox WHERE parked = 1 GROUP BY user_id ORDER BY MIN(seq)')->fetchAll(\PDO::FETCH_COLUMN);
        $requeued = 0;
        $last = 'nothing due';
        foreach ($users as $userId) {
            if ($this->requeueAsNow((string) $userId)) {
                $requeued++;
                $last = $this->deliver((string) $userId, true);
            }
        }
        return [$requeued, $last];
    }

    /** The SCIM resource a user maps to (`map-user`), for a preview. */
    public function mapUser(string $needle): array
    {
        return $this->connector()->mapUser(self::cmsUser($this->findUser($needle)));
    }

    // ---------------------------------------------------------------- internals

    /**
     * @param list<array{user: array<string, mixed>, event: UserEvent, link: ?array<string, mixed>, planned: PlannedAction, reason: ?string}> $work
     * @param array<string, int> $counts
     */
    private function recordBatch(array $work, \ScimProvisioner\BatchOutcome|\Throwable $result, int $started, array &$counts): void
    {
        $this->inTransaction(function () use ($work, $result, $started, &$counts): void {
            if ($result instanceof \Throwable) {
                // A trap or a bridge failure: the next sync tries these users again.
                foreach ($work as $w) {
                    $counts['failed']++;
                    $this->log($w['user']['id'], 'sync', 'failed', $started, null, $result->getMessage());
                }
                return;
            }
            $counts['requests'] += $result->requests;
            $this->metrics->add('scim_client_requests_total', ['target' => $this->target()], (float) $result->requests);
            $counts['bulk_requests'] += $result->bulkRequests;
            foreach ($work as $i => $w) {
                $r = $result->results[$i] ?? null;
                if ($r instanceof ProvisionOutcome) {
                    $link = $w['event'] === UserEvent::Deleted ? null : $r->link;
                    $this->saveLink($w['user']['id'], $link, $this->fingerprint($w['user']));
                    $counts[$r->action->value] = ($counts[$r->action->value] ?? 0) + 1;
                    $this->log($w['user']['id'], 'sync', $r->action->value, $started, null, $r->reason);
                } else {
                    $counts['failed']++;
                    $this->log($w['user']['id'], 'sync', 'failed', $started, $r?->status, $r?->getMessage() ?? 'no result');
                }
            }
        });
    }

    /** @param array<string, mixed> $event an outbox row */
    private function deliverOne(array $event): string
    {
        $user = json_decode((string) $event['user_json'], true);
        $userEvent = UserEvent::from((string) $event['event']);
        $started = hrtime(true);
        try {
            $outcome = $this->connector()->provision(self::cmsUser($user), $userEvent, $this->linkOf((string) $event['user_id']));
        } catch (ProvisioningException $e) {
            return $this->failEvent($event, $e->getMessage(), $e->retry, $e->retryAfterSeconds, $e->status, $started);
        } catch (GuestTrapException $e) {
            return $this->failEvent($event, $e->getMessage(), 'backoff', null, null, $started);
        }
        $this->inTransaction(function () use ($event, $user, $userEvent, $outcome, $started): void {
            // A deleted user is deprovisioned for good: stop tracking its remote twin.
            $this->saveLink((string) $event['user_id'], $userEvent === UserEvent::Deleted ? null : $outcome->link, $this->fingerprint($user));
            $this->db->prepare('DELETE FROM outbox WHERE seq = ?')->execute([$event['seq']]);
            $this->log((string) $event['user_id'], $userEvent->value, $outcome->action->value, $started, null, $outcome->reason);
        });
        return $outcome->action->value . ($outcome->reason !== null ? " ({$outcome->reason})" : '');
    }

    /** @param array<string, mixed> $event */
    private function failEvent(array $event, string $message, string $retry, ?int $after, ?int $status, int $started): string
    {
        $attempts = (int) $event['attempts'] + 1;
        $park = $retry === 'permanent' || $attempts >= ($this->config['max_attempts'] ?? 8);
        $delay = $retry === 'after-seconds' ? max(1, (int) $after) : min(3600, 2 ** min($attempts, 12));
        $this->inTransaction(function () use ($event, $attempts, $park, $delay, $message, $status, $started, $retry): void {
            $this->db->prepare('UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, parked = ? WHERE seq = ?')
                ->execute([$attempts, time() + $delay, $message, $park ? 1 : 0, $event['seq']]);
            $this->log((string) $event['user_id'], (string) $event['event'], 'failed', $started, $status, $message);
            if (!$park) {
                $reason = match (true) {
                    $status === 429 => 'rate_limited',
                    $status === 503 => 'unavailable',
                    $status !== null && $status >= 500 => 'server_error',
                    $status === null && $retry === 'backoff' => 'transport_or_trap',
                    default => 'other',
                };
                $this->metrics->add('scim_client_retries_total', ['reason' => $reason]);
            }
        });
        return ($park ? 'failed, parked: ' : "failed, will retry in {$delay} s: ") . $message;
    }

    /**
     * Replaces a user's queued changes by the one change they need now, in one transaction:
     * a `reconcile` with the user as the CMS holds them now, or the `deleted` event with the
     * last snapshot when the CMS no longer has them. An outbox event holds the user as they
     * were when it was queued; replaying a retried one would send values that a later change
     * or a sync may have overtaken. False (nothing changed) when the last snapshot of a
     * deleted user cannot be read, which only a hand-edited database has.
     */
    private function requeueAsNow(string $userId): bool
    {
        return $this->inTransaction(function () use ($userId): bool {
            $user = $this->user($userId);
            $event = UserEvent::Reconcile;
            if ($user === null) {
                $stmt = $this->db->prepare('SELECT user_json FROM outbox WHERE user_id = ? ORDER BY seq DESC LIMIT 1');
                $stmt->execute([$userId]);
                $last = json_decode((string) $stmt->fetchColumn(), true);
                if (!is_array($last) || !isset($last['id'], $last['name'])) {
                    return false;
                }
                [$user, $event] = [$last, UserEvent::Deleted];
            }
            $this->db->prepare('DELETE FROM outbox WHERE user_id = ?')->execute([$userId]);
            $this->enqueue($user, $event);
            return true;
        });
    }

    /** @param array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool} $user */
    private function enqueue(array $user, UserEvent $event): void
    {
        $this->db->prepare('INSERT INTO outbox (user_id, event, user_json) VALUES (?, ?, ?)')
            ->execute([$user['id'], $event->value, json_encode($user, JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR)]);
    }

    private function saveLink(string $userId, ?Link $link, string $fingerprint): void
    {
        if ($link === null) {
            $this->db->prepare('DELETE FROM links WHERE user_id = ?')->execute([$userId]);
            return;
        }
        $this->db->prepare('INSERT INTO links (user_id, remote_id, version, snapshot, fingerprint) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(user_id) DO UPDATE SET remote_id = excluded.remote_id, version = excluded.version,
            snapshot = excluded.snapshot, fingerprint = excluded.fingerprint')
            ->execute([$userId, $link->remoteId, $link->version, $link->snapshot, $fingerprint]);
    }

    private function linkOf(string $userId): ?Link
    {
        return self::toLink($this->link($userId));
    }

    /** @param array<string, mixed>|null $row */
    private static function toLink(?array $row): ?Link
    {
        return $row === null ? null : new Link((string) $row['remote_id'], $row['version'] ?? null, $row['snapshot'] ?? null);
    }

    private function log(string $userId, string $operation, string $outcome, int $startedNs, ?int $status, ?string $error): void
    {
        $this->db->prepare('INSERT INTO log (at, user_id, operation, outcome, http_status, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)')
            ->execute([gmdate('Y-m-d\TH:i:s\Z'), $userId, $operation, $outcome, $status, $error, intdiv(hrtime(true) - $startedNs, 1_000_000)]);
        // Every provisioning outcome is logged here, so it is counted here, in the same transaction.
        $ok = $outcome !== 'failed';
        $action = $ok ? $outcome : match ($operation) {
            'created' => 'created',
            'blocked' => 'deactivated',
            'deleted' => 'deleted',
            default => 'updated',
        };
        $this->metrics->add('scim_users_provisioned_total', ['action' => $action, 'result' => $ok ? 'ok' : 'failed']);
    }

    /** The SCIM origin the site provisions to (scheme://host[:port]), the requests' `target` label. */
    private function target(): string
    {
        $p = parse_url((string) ($this->config['connector']['base_url'] ?? ''));
        return is_array($p) && isset($p['scheme'], $p['host'])
            ? strtolower($p['scheme']) . '://' . strtolower($p['host']) . (isset($p['port']) ? ':' . $p['port'] : '')
            : 'invalid';
    }

    /**
     * Every counter in the site's database, with the outbox gauges read now. Static, on the
     * site's PDO: a scrape needs neither the bridge nor the component.
     *
     * @return list<array{metric: string, labels: string, value: float}>
     */
    public static function metricRows(\PDO $db): array
    {
        $db->exec(self::SCHEMA);
        $metrics = new PdoMetrics($db);
        $metrics->install();
        $outbox = $db->query('SELECT COALESCE(SUM(parked = 0), 0), COALESCE(SUM(parked = 1), 0) FROM outbox')->fetch(\PDO::FETCH_NUM);
        return [...$metrics->rows(),
            ['metric' => 'scim_outbox_depth', 'labels' => '', 'value' => (float) $outbox[0]],
            ['metric' => 'scim_outbox_parked', 'labels' => '', 'value' => (float) $outbox[1]]];
    }

    /** The counters in the Prometheus text format 0.0.4, for GET /metrics. */
    public static function metricsText(\PDO $db): string
    {
        return PrometheusText::render(self::METRIC_FAMILIES, self::metricRows($db));
    }

    /** A fingerprint of everything provisioning reads, so a sync can tell "changed" without asking the server. */
    private function fingerprint(array $user): string
    {
        return sha1(json_encode([$user['id'], $user['name'], $user['mail'], (object) $user['fields'], (bool) $user['active'], $this->policyJson]) ?: '');
    }

    private function thresholdLimit(int $linked): int
    {
        $t = trim($this->config['deprovision_threshold'] ?? '10%');
        return str_ends_with($t, '%') ? (int) ceil($linked * (float) rtrim($t, '%') / 100) : (int) $t;
    }

    /** @param array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool} $user */
    public static function cmsUser(array $user): CmsUser
    {
        $fields = ['name' => $user['name'], 'mail' => $user['mail']];
        foreach ($user['fields'] as $k => $v) {
            $fields[$k] = is_array($v) && !array_is_list($v) ? json_encode($v) : $v;
        }
        return new CmsUser((string) $user['id'], $fields, (bool) $user['active']);
    }

    /**
     * @param array<string, mixed> $row
     * @return array{id: string, name: string, mail: string, fields: array<string, mixed>, active: bool}
     */
    private static function row(array $row): array
    {
        return [
            'id' => (string) $row['id'],
            'name' => (string) $row['name'],
            'mail' => (string) $row['mail'],
            'fields' => (array) json_decode((string) $row['fields'], true),
            'active' => (bool) $row['active'],
        ];
    }

    /**
     * @template T
     * @param callable(): T $work
     * @return T
     */
    private function inTransaction(callable $work): mixed
    {
        if ($this->db->inTransaction()) {
            return $work();
        }
        $this->db->beginTransaction();
        try {
            $result = $work();
            $this->db->commit();
            return $result;
        } catch (\Throwable $e) {
            $this->db->rollBack();
            throw $e;
        }
    }
}
