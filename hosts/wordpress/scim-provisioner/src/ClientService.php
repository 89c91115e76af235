<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\BatchItem;
use ScimProvisioner\BatchOutcome;
use ScimProvisioner\BridgeException;
use ScimProvisioner\Concurrent;
use ScimProvisioner\Connector;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\PlannedAction;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\ProvisionOutcome;
use ScimProvisioner\Settlement;
use ScimProvisioner\UserEvent;

/**
 * The client role: WordPress users provisioned to a SCIM server through the component.
 *
 * Three modes, one path: the hooks queue events in the outbox ({@see UserHooks});
 * automatic mode delivers them at the end of the request that made them ({@see drain()});
 * "Provision now" replaces a user's queue by a reconcile and delivers it at once;
 * the scheduled reconcile ({@see runSync()}, from WP-Cron or bin/worker) drains the outbox
 * and then sends every user whose fingerprint changed, in batches (bulk where the server
 * has it). A failed delivery stays queued with its reason and next attempt time (the
 * component's retry class), or is parked when retrying cannot help; nothing is lost.
 *
 * Every public method returns data (never prints) and reports failures in its result.
 */
final class ClientService
{
    public const MAX_ATTEMPTS = 8;
    public const BATCH_SIZE = 100;
    /** Connectors a sync runs at once (their batches in flight together). */
    public const SYNC_WORKERS = 4;
    /** A first sync with this many creates lists the remote users once instead of one lookup each. */
    public const INDEX_FROM_CREATES = 50;
    private const SYNC_LOCK = 'scim_provisioner_sync';

    private ?Connector $connector = null;
    /** Users a running sync counted as done before its batches (its drained changes), for its progress. */
    private int $progressDone = 0;
    private ?UserFields $fields = null;
    /** Identifies this process's claims in the outbox. */
    private readonly string $owner;

    public function __construct(private readonly Plugin $plugin)
    {
        $this->owner = substr((gethostname() ?: 'host') . ':' . getmypid() . ':' . bin2hex(random_bytes(6)), 0, 64);
    }

    /**
     * "Save and Test Credentials".
     *
     * @return array{ok: bool, message: string, capabilities?: array<string, mixed>}
     */
    public function testConnection(): array
    {
        try {
            $caps = $this->connector()->testConnection();
        } catch (\Throwable $e) {
            return ['ok' => false, 'message' => self::describe($e)];
        }
        $capabilities = [
            'discovered' => $caps->discovered,
            'patch' => $caps->patch,
            'bulk' => $caps->bulk === null ? null : [
                'max_operations' => $caps->bulk->maxOperations,
                'max_payload_size' => $caps->bulk->maxPayloadSize,
            ],
            'filter_max_results' => $caps->filterMaxResults,
            'etag' => $caps->etag,
            'sort' => $caps->sort,
            'change_password' => $caps->changePassword,
        ];
        $features = array_keys(array_filter(
            ['PATCH' => $caps->patch, 'Bulk' => $caps->bulk !== null, 'ETag' => $caps->etag, 'sort' => $caps->sort]
        ));
        $supports = $features === [] ? 'the basics only' : implode(', ', $features);
        return [
            'ok' => true,
            'message' => 'Connected. ' . ($caps->discovered
                ? "The server supports: {$supports}."
                : 'The server does not publish /ServiceProviderConfig; the basics are assumed.'),
            'capabilities' => $capabilities,
        ];
    }

    /**
     * Provisions one user now (a reconcile: created, updated, deactivated as needed). The
     * user's queued changes are replaced by this one, so nothing older lands after it.
     *
     * @return array{ok: bool, message: string, action?: string}
     */
    public function provisionNow(int $userId): array
    {
        $user = get_userdata($userId);
        if (!$user instanceof \WP_User) {
            return ['ok' => false, 'message' => "there is no user {$userId}"];
        }
        if (($problem = $this->deliveryProblem()) !== null) {
            return ['ok' => false, 'message' => $problem];
        }
        try {
            $snapshot = $this->fields()->snapshot($user);
            if (!$this->plugin->outbox()->replaceForUser($userId, UserEvent::Reconcile->value, $snapshot)) {
                return ['ok' => false, 'message' => 'a delivery for this user is in progress; try again in a moment'];
            }
            $result = $this->drain([$userId], true);
        } catch (\Throwable $e) {
            return ['ok' => false, 'message' => self::describe($e)];
        }
        return self::resultFor($userId, $result);
    }

    /**
     * The SCIM resource a user maps to, with the saved mapping or the one given (JSON rules).
     * Sends nothing.
     *
     * @return array{ok: bool, payload?: array<string, mixed>, message?: string}
     */
    public function previewMapping(int $userId, ?string $mappingJson = null): array
    {
        $user = get_userdata($userId);
        if (!$user instanceof \WP_User) {
            return ['ok' => false, 'message' => "there is no user {$userId}"];
        }
        $settings = $this->plugin->settings();
        $policy = $settings->policy();
        if ($mappingJson !== null && trim($mappingJson) !== '') {
            $rules = json_decode($mappingJson, true);
            if (!is_array($rules) || !array_is_list($rules)) {
                $why = json_last_error_msg();
                return ['ok' => false, 'message' => "the mapping is a JSON array of rules ({$why})"];
            }
            $policy['mapping'] = $rules;
        }
        try {
            $connector = $this->offlineConnector($policy);
            $fields = new UserFields(UserFields::metaKeysOf($policy['mapping']));
            return ['ok' => true, 'payload' => $connector->mapUser(UserFields::toCmsUser($fields->snapshot($user)))];
        } catch (\Throwable $e) {
            return ['ok' => false, 'message' => self::describe($e)];
        }
    }

    /**
     * What a sync would do, without sending anything.
     *
     * @return array{ok: bool, actions: list<array{user_id: int, user_login: string, action: string, reason: string}>,
     *     counts: array<string, int>, message?: string}
     */
    public function planSync(): array
    {
        try {
            $work = $this->syncWork(true);
        } catch (\Throwable $e) {
            return ['ok' => false, 'actions' => [], 'counts' => [], 'message' => self::describe($e)];
        }
        $actions = [];
        $counts = ['unchanged' => $work['unchanged']];
        foreach ($work['items'] as $w) {
            $actions[] = [
                'user_id' => $w['user_id'],
                'user_login' => $w['user_login'],
                'action' => $w['planned']->value,
                'reason' => (string) $w['reason'],
            ];
            $counts[$w['planned']->value] = ($counts[$w['planned']->value] ?? 0) + 1;
        }
        return ['ok' => true, 'actions' => $actions, 'counts' => $counts];
    }

    /**
     * The full reconcile: drains the outbox, then sends every user whose fingerprint changed.
     * Refused when it would deactivate or delete more users than the deletion threshold,
     * unless $allowDeletes.
     *
     * @return array{ok: bool, counts: array<string, int>, message: string}
     */
    public function runSync(bool $allowDeletes): array
    {
        if (($problem = $this->deliveryProblem()) !== null) {
            return ['ok' => false, 'counts' => [], 'message' => $problem];
        }
        $started = hrtime(true);
        try {
            // Everything, the lock's release included, under the guard: once the database is
            // gone, any query ends in wp_die().
            return DatabaseGuard::run(function () use ($allowDeletes, $started): array {
                global $wpdb;
                $lock = $wpdb->prefix . self::SYNC_LOCK;
                if ((int) $wpdb->get_var($wpdb->prepare('SELECT GET_LOCK(%s, 0)', $lock)) !== 1) {
                    return ['ok' => false, 'counts' => [], 'message' => 'a sync is already running'];
                }
                try {
                    $result = $this->doSync($allowDeletes, $started);
                    Metrics::add('scim_syncs_total', ['result' => $result['ok'] ? 'ok' : 'failed']);
                    return $result;
                } finally {
                    SyncProgress::finish();
                    Metrics::flush();
                    try {
                        $wpdb->query($wpdb->prepare('SELECT RELEASE_LOCK(%s)', $lock));
                    } catch (DatabaseUnavailableException) {
                        // The lock went with the connection.
                    }
                }
            });
        } catch (\Throwable $e) {
            return ['ok' => false, 'counts' => [], 'message' => self::describe($e)];
        }
    }

    /**
     * Retries what a failed log row was about: the user as they are now (or, for a deleted
     * user, their queued deletion).
     *
     * @return array{ok: bool, message: string}
     */
    public function retry(int $logId): array
    {
        $row = $this->plugin->log()->get($logId);
        if ($row === null) {
            return ['ok' => false, 'message' => "there is no log entry {$logId}"];
        }
        if (!$row['retryable']) {
            return ['ok' => false, 'message' => 'this entry is not a failure about a user; nothing to retry'];
        }
        $userId = $row['user_id'];
        if (get_userdata($userId) instanceof \WP_User) {
            $r = $this->provisionNow($userId);
            return ['ok' => $r['ok'], 'message' => $r['message']];
        }
        if (($problem = $this->deliveryProblem()) !== null) {
            return ['ok' => false, 'message' => $problem];
        }
        $last = $this->plugin->outbox()->latestForUser($userId);
        if ($last === null || $last['event'] !== UserEvent::Deleted->value) {
            return [
                'ok' => false,
                'message' => "user {$row['user_login']} no longer exists and no change of theirs is queued",
            ];
        }
        try {
            $snapshot = json_decode((string) $last['user_json'], true);
            $link = ($last['link_json'] ?? '') !== '' ? json_decode((string) $last['link_json'], true) : null;
            $link = is_array($link) ? $link : null;
            $outbox = $this->plugin->outbox();
            $requeued = is_array($snapshot)
                && $outbox->replaceForUser($userId, UserEvent::Deleted->value, $snapshot, $link);
            if (!$requeued) {
                return ['ok' => false, 'message' => 'a delivery for this user is in progress; try again in a moment'];
            }
            $r = self::resultFor($userId, $this->drain([$userId], true));
            return ['ok' => $r['ok'], 'message' => $r['message']];
        } catch (\Throwable $e) {
            return ['ok' => false, 'message' => self::describe($e)];
        }
    }

    /**
     * A user's provisioning state for the Users list: `provisioned`, `not provisioned`,
     * `pending` (a change is queued) or `failed` (a change is parked after failing).
     *
     * @return array{state: string, remote_id: ?string, last_result: ?string, last_at: ?int}
     */
    public function userState(int $userId): array
    {
        $link = Links::get($userId);
        $counts = $this->plugin->outbox()->counts($userId);
        $state = match (true) {
            $counts['parked'] > 0 => 'failed',
            $counts['pending'] > 0 => 'pending',
            $link !== null => 'provisioned',
            default => 'not provisioned',
        };
        $last = Links::lastResult($userId);
        return [
            'state' => $state,
            'remote_id' => $link['remote_id'] ?? null,
            'last_result' => $last['result'] ?? null,
            'last_at' => $last['at'] ?? null,
        ];
    }

    /**
     * Delivers due outbox rows, each user's in order, until none is due (or $maxRows).
     *
     * @param list<int>|null $userIds only these users; null for all
     * @return array{delivered: int, failed: int, message: string,
     *     results: array<int, array{ok: bool, action: ?string, message: string}>}
     */
    public function drain(?array $userIds = null, bool $ignoreRetryTimes = false, int $maxRows = PHP_INT_MAX): array
    {
        $summary = ['delivered' => 0, 'failed' => 0, 'message' => 'nothing due', 'results' => []];
        if (($problem = $this->deliveryProblem()) !== null) {
            $summary['message'] = $problem;
            return $summary;
        }
        return DatabaseGuard::run(function () use ($userIds, $ignoreRetryTimes, $maxRows, $summary): array {
            $done = 0;
            $tried = [];
            while ($done < $maxRows) {
                $limit = (int) min(50, $maxRows - $done);
                $rows = $this->plugin->outbox()->claimDue($this->owner, $limit, $userIds, $ignoreRetryTimes);
                $rows = array_values(array_filter($rows, function (array $r) use (&$tried): bool {
                    if (isset($tried[$r['id']])) {
                        // Tried once in this drain already (a retry time of 0): leave it to the next.
                        $this->plugin->outbox()->release($r['id'], $this->owner);
                        return false;
                    }
                    return true;
                }));
                if ($rows === []) {
                    break;
                }
                try {
                    $connector = $this->connector();
                } catch (\Throwable $e) {
                    // Cannot deliver from this process at all (configuration, bridge): give the rows back.
                    foreach ($rows as $r) {
                        $this->plugin->outbox()->release($r['id'], $this->owner);
                    }
                    $summary['message'] = self::describe($e);
                    $this->plugin->log()->add(0, '', 'deliver', 'failed', null, $summary['message'], 0);
                    return $summary;
                }
                foreach ($rows as $row) {
                    $tried[$row['id']] = true;
                }
                foreach ($this->deliverBatch($connector, $rows, $tried) as $userId => $result) {
                    $summary['results'][$userId] = $result;
                    $summary[$result['ok'] ? 'delivered' : 'failed']++;
                    $summary['message'] = $result['message'];
                    $done++;
                }
            }
            return $summary;
        });
    }

    /**
     * The connector for the saved settings, opened on first use.
     *
     * @throws \RuntimeException|BridgeException|ProvisioningException
     */
    public function connector(): Connector
    {
        $config = $this->plugin->settings()->connectorConfig();
        return $this->connector ??= Connector::open($this->plugin->runtime(), $config);
    }

    /** The fields reader for the saved mapping. */
    public function fields(): UserFields
    {
        return $this->fields ??= new UserFields(UserFields::metaKeysOf($this->plugin->settings()->mappingRules()));
    }

    /** Null when this process can deliver; else why not. */
    public function deliveryProblem(): ?string
    {
        if (!$this->plugin->settings()->isConfigured()) {
            return 'no SCIM server is configured (base URL and credentials)';
        }
        return $this->plugin->ffiProblem();
    }

    /**
     * Delivers a claimed batch (at most one row per user, each its user's oldest), then
     * records it at once ({@see Outbox::settle()}: one transaction, a fixed number of
     * statements, the links written as user meta in it), then logs it in one statement.
     *
     * The lease is extended every third of it, between two rows, so it only has to outlast
     * one row's delivery; if one ran longer than that, the rows no longer held are left to
     * whoever holds them now (checked row by row from then on: an extension cannot revive a
     * lease that ran out), and the settle records nothing of them.
     *
     * @param list<array<string, mixed>> $rows claimed outbox rows
     * @param array<int, true> $tried rows tried in this drain; a row left to another deliverer is taken out
     * @return array<int, array{ok: bool, action: ?string, message: string}> by user id, the rows recorded
     */
    private function deliverBatch(Connector $connector, array $rows, array &$tried): array
    {
        $outbox = $this->plugin->outbox();
        $settlements = [];
        $delivered = [];
        $about = [];
        $policyJson = $this->plugin->settings()->policyJson();
        $links = Links::many(array_map(static fn (array $r): int => (int) $r['user_id'], $rows));
        $extended = microtime(true);
        $lapsed = false;
        foreach ($rows as $row) {
            $userId = (int) $row['user_id'];
            $snapshot = json_decode((string) $row['user_json'], true);
            $event = UserEvent::tryFrom((string) $row['event']);
            $login = is_array($snapshot) ? (string) ($snapshot['fields']['user_login'] ?? '') : '';
            if ($lapsed || microtime(true) - $extended > Outbox::leaseSeconds() / 3) {
                if (!$outbox->stillHolds($row['id'], $this->owner)) {
                    // The lease ran out (a row slower than two thirds of it): the row is another
                    // deliverer's now, or due again for whoever claims it next.
                    unset($tried[$row['id']]);
                    $lapsed = true;
                    continue;
                }
                $extended = microtime(true);
                $lapsed = false;
            }
            $cms = null;
            try {
                $cms = is_array($snapshot) ? UserFields::toCmsUser($snapshot) : null;
            } catch (\InvalidArgumentException) {
                // Unreadable, as below.
            }
            if ($cms === null || $event === null) {
                $why = 'the queued change cannot be read';
                $outbox->fail($row['id'], $this->owner, $row['attempts'] + 1, time(), $why, null, true);
                $this->plugin->log()->add($userId, $login, (string) $row['event'], 'failed', null, "{$why}; parked", 0);
                $about[$row['id']] = ['unreadable' => true];
                continue;
            }
            $item = new OutboxEvent($row['id'], $event, $cms, $row['attempts'], $row['created_at']);
            $link = null;
            if (($row['link_json'] ?? '') !== '' && $row['link_json'] !== null) {
                $l = json_decode((string) $row['link_json'], true);
                $link = is_array($l) && isset($l['remote_id']) ? $l : null;
            }
            $link ??= $links[$userId] ?? null;
            $started = hrtime(true);
            try {
                $outcome = $connector->provision($cms, $event, Links::toLink($link));
                $message = $outcome->action->value . ($outcome->reason !== null ? " ({$outcome->reason})" : '');
                $settlements[] = Settlement::delivered($item, $event === UserEvent::Deleted ? null : $outcome->link);
                $delivered[$row['id']] = ['fingerprint' => UserFields::fingerprint($snapshot, $policyJson),
                    'message' => $message];
                $about[$row['id']] = ['login' => $login, 'ms' => self::ms($started), 'outcome' => $outcome];
            } catch (ProvisioningException | GuestTrapException $e) {
                $settlements[] = Settlement::failed($item, $e);
                $about[$row['id']] = ['login' => $login, 'ms' => self::ms($started), 'error' => $e];
            }
        }
        if ($settlements === []) {
            return [];
        }
        $results = $outbox->settle($this->owner, $settlements, $delivered, self::MAX_ATTEMPTS);
        $log = [];
        $summary = [];
        foreach ($settlements as $s) {
            $id = $s->event->id;
            $result = $results[$id]['result'];
            if ($result === 'lost') {
                // The lease ran out during the request: the row's holder now decides and records it.
                continue;
            }
            $a = $about[$id];
            $userId = (int) $s->event->user->id;
            $event = $s->event->event->value;
            if ($result === 'delivered') {
                $outcome = $a['outcome'];
                Metrics::userProvisioned($outcome->action->value, true);
                $log[] = ['user_id' => $userId, 'user_login' => $a['login'], 'operation' => $event,
                    'outcome' => $outcome->action->value, 'status' => null, 'message' => $outcome->reason,
                    'duration_ms' => $a['ms']];
                $summary[$userId] = ['ok' => true, 'action' => $outcome->action->value,
                    'message' => $delivered[$id]['message']];
                continue;
            }
            $error = $a['error'];
            $status = $error instanceof ProvisioningException ? $error->status : null;
            Metrics::userProvisioned(Metrics::attemptedAction($event), false);
            if ($result === 'retry') {
                $retry = $error instanceof ProvisioningException ? $error->retry : 'backoff';
                Metrics::add('scim_client_retries_total', ['reason' => Metrics::retryReason($status, $retry)]);
            }
            $log[] = ['user_id' => $userId, 'user_login' => $a['login'], 'operation' => $event, 'outcome' => 'failed',
                'status' => $status, 'message' => $error->getMessage(), 'duration_ms' => $a['ms']];
            $summary[$userId] = ['ok' => false, 'action' => null, 'message' => $results[$id]['message']];
        }
        $this->plugin->log()->addMany($log);
        return $summary;
    }

    /**
     * @return array{ok: bool, counts: array<string, int>, message: string}
     */
    private function doSync(bool $allowDeletes, int $started): array
    {
        $counts = [
            'created' => 0, 'adopted' => 0, 'updated' => 0, 'unchanged' => 0, 'deactivated' => 0,
            'deleted' => 0, 'skipped' => 0, 'unlinked' => 0, 'failed' => 0, 'waiting' => 0,
            'requests' => 0, 'bulk_requests' => 0,
        ];
        // The deletion threshold is checked before anything is sent, the queued changes
        // included (as the plan shows them): over it, a sync sends nothing at all.
        $queued = $this->plugin->outbox()->waitingUsers() !== [];
        $work = $this->syncWork(true, false);
        $deprovisions = count(array_filter(
            $work['items'],
            static fn (array $w): bool => $w['planned'] === PlannedAction::Deactivate
                || $w['planned'] === PlannedAction::Delete,
        ));
        $threshold = (int) $this->plugin->settings()->get('deletion_threshold');
        if (!$allowDeletes && $deprovisions > $threshold) {
            $message = "this sync would deactivate or delete {$deprovisions} users, more than the deletion "
                . "threshold of {$threshold}; nothing was sent. Check the plan, then confirm to allow it.";
            return ['ok' => false, 'counts' => $counts, 'message' => $message];
        }
        $drained = 0;
        if ($queued) {
            // The queued changes go first, in order; what they sent is counted with the rest.
            foreach ($this->drain(null, true)['results'] as $r) {
                $drained++;
                $key = $r['ok'] ? (string) $r['action'] : 'failed';
                $counts[$key] = ($counts[$key] ?? 0) + 1;
            }
            $work = $this->syncWork(false);
        }
        $counts['unchanged'] += $work['unchanged'];
        $counts['waiting'] = $work['waiting'];
        $items = [];
        foreach ($work['items'] as $w) {
            if ($w['planned'] === PlannedAction::Skip) {
                $counts['skipped']++;
                continue;
            }
            $items[] = $w;
        }
        // The progress counts the drained changes as done, and the sync's time from its start.
        $startedAt = microtime(true) - (hrtime(true) - $started) / 1e9;
        SyncProgress::start($drained + count($items), $drained, $counts['failed'], $startedAt);
        $this->progressDone = $drained;
        $this->sendBatches($items, $counts);
        $message = sprintf(
            '%d created, %d adopted, %d updated, %d unchanged, %d deactivated, %d deleted, %d skipped, %d failed',
            $counts['created'],
            $counts['adopted'],
            $counts['updated'],
            $counts['unchanged'],
            $counts['deactivated'],
            $counts['deleted'],
            $counts['skipped'],
            $counts['failed']
        );
        $outcome = $counts['failed'] > 0 ? 'partial' : 'done';
        $this->plugin->log()->add(0, '', 'sync', $outcome, null, $message, self::ms($started));
        return ['ok' => $counts['failed'] === 0, 'counts' => $counts, 'message' => $message];
    }

    /**
     * Sends the sync's users in batches on several connectors at once (each its own component
     * instance; their HTTP requests share one curl_multi set, {@see Concurrent}), a user
     * always on the same one; each round's results are recorded before the next round.
     *
     * @param list<array<string, mixed>> $items
     * @param array<string, int> $counts
     */
    private function sendBatches(array $items, array &$counts): void
    {
        if ($items === []) {
            return;
        }
        $connector = $this->connector();
        /** Filters how many users go in one batch (the component still keeps to the server's /Bulk limits). */
        $batchSize = max(1, (int) apply_filters('scim_provisioner_sync_batch_size', self::BATCH_SIZE));
        /** Filters how many connectors a sync runs at once. */
        $maxWorkers = max(1, (int) apply_filters('scim_provisioner_sync_workers', self::SYNC_WORKERS));
        $workers = (int) min($maxWorkers, ceil(count($items) / $batchSize));
        $target = ['target' => Metrics::origin($connector->baseUrl)];
        Metrics::set('scim_client_concurrency', $target, $maxWorkers);
        $requestsRecorded = $counts['requests'];
        $connectors = [$connector];
        for ($i = 1; $i < $workers; $i++) {
            $connectors[] = Connector::open($this->plugin->runtime(), $this->plugin->settings()->connectorConfig());
        }
        $creates = count(array_filter($items, static fn (array $w): bool => $w['planned'] === PlannedAction::Create));
        if ($creates >= self::INDEX_FROM_CREATES) {
            // A first sync: the remote users are listed once, and the other workers load the listing.
            try {
                $counts['requests'] += $connector->indexRemoteUsers()->requests;
                $document = $connector->exportRemoteIndex();
                foreach (array_slice($connectors, 1) as $other) {
                    if ($document !== null) {
                        $other->importRemoteIndex($document);
                    }
                }
            } catch (ProvisioningException | GuestTrapException $e) {
                // Matching then looks each user up; the sync still works, only slower.
                $status = $e instanceof ProvisioningException ? $e->status : null;
                $why = 'listing the remote users failed: ' . $e->getMessage();
                $this->plugin->log()->add(0, '', 'sync', 'warning', $status, $why, 0);
            }
        }
        $queues = array_fill(0, $workers, []);
        foreach ($items as $w) {
            $queues[$w['user_id'] % $workers][] = $w;
        }
        $chunks = array_map(static fn (array $q): array => array_chunk($q, $batchSize), $queues);
        $policyJson = $this->plugin->settings()->policyJson();
        for ($round = 0;; $round++) {
            $jobs = [];
            $jobChunks = [];
            foreach ($chunks as $worker => $list) {
                if (isset($list[$round])) {
                    $jobs[] = [$connectors[$worker], array_map(
                        static fn (array $w): BatchItem => new BatchItem(
                            UserFields::toCmsUser($w['snapshot']),
                            UserEvent::Reconcile,
                            Links::toLink($w['link']),
                        ),
                        $list[$round],
                    )];
                    $jobChunks[] = $list[$round];
                }
            }
            if ($jobs === []) {
                return;
            }
            $started = hrtime(true);
            foreach (Concurrent::provisionBatches($jobs) as $j => $result) {
                $this->recordBatch($jobChunks[$j], $result, $started, $policyJson, $counts);
            }
            // Live for the "Sync now" screen and the dashboard, once per round.
            $done = 0;
            foreach ($chunks as $list) {
                foreach (array_slice($list, 0, $round + 1) as $chunk) {
                    $done += count($chunk);
                }
            }
            SyncProgress::advance($this->progressDone + $done, $counts['failed']);
            Metrics::add('scim_client_requests_total', $target, $counts['requests'] - $requestsRecorded);
            $requestsRecorded = $counts['requests'];
            Metrics::flush();
        }
    }

    /**
     * @param list<array<string, mixed>> $chunk
     * @param array<string, int> $counts
     */
    private function recordBatch(
        array $chunk,
        BatchOutcome|\Throwable $result,
        int $started,
        string $policyJson,
        array &$counts,
    ): void {
        // One transaction per batch: a hundred users' links and log rows cost one commit (one
        // log flush) instead of one each. Lost with the database, they are found again by the
        // next sync, which adopts the users it already sent.
        global $wpdb;
        $wpdb->query('START TRANSACTION');
        try {
            $log = $this->recordBatchRows($chunk, $result, $started, $policyJson, $counts);
            $this->plugin->log()->addMany($log);
            $wpdb->query('COMMIT');
        } catch (\Throwable $e) {
            $wpdb->query('ROLLBACK');
            throw $e;
        }
    }

    /**
     * Stores each user's link and last result (in one statement for the batch), and returns
     * the batch's log rows.
     *
     * @param list<array<string, mixed>> $chunk
     * @param array<string, int> $counts
     * @return list<array{user_id: int, user_login: string, operation: string, outcome: string, status: ?int,
     *     message: ?string, duration_ms: int}>
     */
    private function recordBatchRows(
        array $chunk,
        BatchOutcome|\Throwable $result,
        int $started,
        string $policyJson,
        array &$counts,
    ): array {
        $ms = self::ms($started);
        $log = [];
        $meta = [];
        $row = static fn (array $w, string $outcome, ?int $status, ?string $message): array => [
            'user_id' => $w['user_id'],
            'user_login' => $w['user_login'],
            'operation' => 'sync',
            'outcome' => $outcome,
            'status' => $status,
            'message' => $message,
            'duration_ms' => $ms,
        ];
        if ($result instanceof \Throwable) {
            foreach ($chunk as $w) {
                $counts['failed']++;
                Metrics::userProvisioned(Metrics::attemptedAction($w['planned']->value), false);
                $log[] = $row($w, 'failed', null, $result->getMessage());
            }
            return $log;
        }
        $counts['requests'] += $result->requests;
        $counts['bulk_requests'] += $result->bulkRequests;
        foreach ($chunk as $i => $w) {
            $r = $result->results[$i] ?? null;
            if ($r instanceof ProvisionOutcome) {
                $text = $r->action->value . ($r->reason !== null ? " ({$r->reason})" : '');
                $fingerprint = UserFields::fingerprint($w['snapshot'], $policyJson);
                $meta[] = ['user_id' => $w['user_id'], 'link' => $r->link, 'fingerprint' => $fingerprint,
                    'result' => $text];
                $counts[$r->action->value] = ($counts[$r->action->value] ?? 0) + 1;
                Metrics::userProvisioned($r->action->value, true);
                $log[] = $row($w, $r->action->value, null, $r->reason);
            } else {
                $counts['failed']++;
                Metrics::userProvisioned(Metrics::attemptedAction($w['planned']->value), false);
                $message = $r instanceof \Throwable ? $r->getMessage() : 'no result';
                // The link stays as it was: the user is tried again by the next sync.
                $meta[] = ['user_id' => $w['user_id'], 'link' => false, 'fingerprint' => null,
                    'result' => 'failed: ' . $message];
                $log[] = $row($w, 'failed', $r instanceof ProvisioningException ? $r->status : null, $message);
            }
        }
        Links::saveMany($meta);
        return $log;
    }

    /**
     * The users a sync would send: every user whose fingerprint changed since it was last
     * sent, with what the component plans for them. Users with queued changes are left to
     * the outbox (unless $planOnly: the sync's drain sends those first). Without
     * $planUnlinked, only linked users are planned (an unlinked one is created or skipped,
     * never deprovisioned: the threshold does not need its plan).
     *
     * @return array{items: list<array{user_id: int, user_login: string, snapshot: array<string, mixed>,
     *     link: ?array<string, mixed>, planned: PlannedAction, reason: ?string}>, unchanged: int, waiting: int}
     */
    private function syncWork(bool $planOnly, bool $planUnlinked = true): array
    {
        $connector = $this->plugin->settings()->isConfigured()
            ? $this->connector()
            : $this->offlineConnector($this->plugin->settings()->policy());
        $links = Links::all();
        $waiting = $planOnly ? [] : $this->plugin->outbox()->waitingUsers();
        $policyJson = $this->plugin->settings()->policyJson();
        $fields = $this->fields();
        $items = [];
        $unchanged = 0;
        $waitingCount = 0;
        $page = 1;
        do {
            $query = new \WP_User_Query([
                'blog_id' => is_multisite() ? get_current_blog_id() : 0,
                'number' => 500,
                'paged' => $page,
                'orderby' => 'ID',
                'order' => 'ASC',
                'count_total' => false,
                'fields' => 'all_with_meta',
            ]);
            $users = $query->get_results();
            foreach ($users as $user) {
                $id = (int) $user->ID;
                if (isset($waiting[$id])) {
                    $waitingCount++;
                    continue;
                }
                $snapshot = $fields->snapshot($user);
                $link = $links[$id] ?? null;
                if ($link !== null && $link['fingerprint'] === UserFields::fingerprint($snapshot, $policyJson)) {
                    $unchanged++;
                    continue;
                }
                // A sync asks the plan only of linked users (to hold deprovisions to the
                // threshold): an unlinked one is created or skipped, which the batch decides.
                $plan = ($planOnly && $planUnlinked) || $link !== null
                    ? $connector->plan(UserFields::toCmsUser($snapshot), UserEvent::Reconcile, $link !== null)
                    : null;
                $items[] = [
                    'user_id' => $id,
                    'user_login' => (string) $user->user_login,
                    'snapshot' => $snapshot,
                    'link' => $link,
                    'planned' => $plan?->action ?? PlannedAction::Create,
                    'reason' => $plan?->reason,
                ];
            }
            // Each page's users stay in WordPress's object cache otherwise (10,000 users).
            foreach ($users as $user) {
                clean_user_cache($user);
            }
            $page++;
        } while (count($users) === 500);
        return ['items' => $items, 'unchanged' => $unchanged, 'waiting' => $waitingCount];
    }

    /**
     * @param array{results: array<int, array{ok: bool, action: ?string, message: string}>, message: string} $drain
     * @return array{ok: bool, message: string, action?: string}
     */
    private static function resultFor(int $userId, array $drain): array
    {
        $r = $drain['results'][$userId] ?? null;
        if ($r === null) {
            $message = $drain['message'] === 'nothing due'
                ? 'nothing was delivered; the change stays queued'
                : $drain['message'];
            return ['ok' => false, 'message' => $message];
        }
        return $r['ok']
            ? ['ok' => true, 'message' => $r['message'], 'action' => (string) $r['action']]
            : ['ok' => false, 'message' => $r['message']];
    }

    /**
     * A connector on a policy alone, for what sends nothing (a preview, a plan without saved
     * credentials): its origin is a placeholder no request ever reaches.
     *
     * @param array<string, mixed> $policy
     */
    private function offlineConnector(array $policy): Connector
    {
        $config = ['base_url' => 'https://offline.invalid/scim/v2', 'policy' => $policy];
        return Connector::open($this->plugin->runtime(), $config);
    }

    /** A failure as a sentence for the admin; the library's messages never hold secrets. */
    public static function describe(\Throwable $e): string
    {
        $known = $e instanceof ProvisioningException || $e instanceof BridgeException
            || $e instanceof GuestTrapException || $e instanceof \RuntimeException;
        return $known ? $e->getMessage() : 'unexpected error: ' . $e->getMessage();
    }

    private static function ms(int $startedNs): int
    {
        return intdiv(hrtime(true) - $startedNs, 1_000_000);
    }
}
