<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * One worker draining a {@see PdoOutbox} into the SCIM server of a {@see Connector}: claims
 * a batch, delivers each event, then records the whole batch at once
 * ({@see PdoOutbox::settle()}: one transaction, a fixed number of statements; the links saved,
 * the delivered events removed, the failed ones given their retry or parked). Run as many as
 * you like, in processes on any number of hosts sharing the database; each user's events
 * still go out one at a time and in order (a batch holds at most one event per user, and a
 * user's next event is claimable only once this one is settled).
 *
 * **What a crash costs.** A worker killed mid-batch has recorded nothing of that batch: after
 * its lease another worker sends those events again (at most `batch` of them; the component
 * finds the user it created, so the server still has each user once, in order). That is the
 * price of settling a batch in one transaction instead of one per event; a smaller `batch`
 * lowers it. A batch that runs long has its lease extended (every third of the lease, between
 * two events), so the lease only has to outlast one event's delivery.
 *
 * **The database going away** (a restart, a failover, a network cut) does not stop it. On
 * a `PDOException` it drops the connection, waits (0.4 s, doubling up to 6.4 s), opens a new
 * one with `$connect` and goes on, for up to `outage_seconds` (default 600) without a
 * successful reconnect, then gives up by rethrowing. The batch in hand when the database went
 * away is delivered (that needs no database) and recorded after the reconnect: the events this
 * worker still holds (its lease has not run out) are settled, so the server is not written
 * twice; any other worker has taken and sends again (at least once on the wire).
 *
 * The claim owner (host, pid, random) stays the same across reconnects, so the leases this
 * worker took remain its own.
 */
final class OutboxWorker
{
    private const FIRST_BACKOFF_MS = 400;
    private const MAX_BACKOFF_MS = 6400;

    public readonly string $owner;
    private readonly Logger $logger;
    private readonly int $batch;
    private readonly int $idleMs;
    private readonly int $outageSeconds;
    /** @var array{prefix?: string, lease_seconds?: int, max_attempts?: int} */
    private readonly array $outboxOptions;
    private ?PdoOutbox $outbox = null;
    private readonly int $leaseSeconds;
    /** @var list<Settlement> delivered or failed, not yet recorded (the database failed before or during the settle) */
    private array $unsettled = [];
    /** @var list<OutboxEvent> claimed, not started (the database failed before delivery began): given back after the reconnect */
    private array $toRelease = [];
    /** @var array{delivered: int, failed: int, parked: int, lost: int, reconnects: int} */
    private array $stats = ['delivered' => 0, 'failed' => 0, 'parked' => 0, 'lost' => 0, 'reconnects' => 0];

    /**
     * @param \Closure(): \PDO $connect opens a connection to the site's database (again after it went away)
     * @param array{prefix?: string, lease_seconds?: int, max_attempts?: int, batch?: int, idle_ms?: int,
     *     outage_seconds?: int} $options the outbox's options, and: `batch` (events claimed at once,
     *     default 10), `idle_ms` (the wait when nothing is claimable, default 1000), `outage_seconds`
     * @param (\Closure(OutboxEvent, string): void)|null $onEvent called after each event with its
     *     result: `delivered`, `retry`, `parked` or `lost` (the lease had run out)
     */
    public function __construct(
        private readonly \Closure $connect,
        private readonly Connector $connector,
        array $options = [],
        Logger|\Psr\Log\LoggerInterface|null $logger = null,
        private readonly ?\Closure $onEvent = null,
        ?string $owner = null,
    ) {
        $this->owner = $owner ?? PdoOutbox::newOwner();
        $this->logger = PsrLoggerAdapter::wrap($logger);
        $this->batch = (int) ($options['batch'] ?? 10);
        $this->idleMs = (int) ($options['idle_ms'] ?? 1000);
        $this->outageSeconds = (int) ($options['outage_seconds'] ?? 600);
        if ($this->batch < 1 || $this->idleMs < 1 || $this->outageSeconds < 1 || $this->owner === '') {
            throw new InvalidArgumentException('batch, idle_ms and outage_seconds must be at least 1; owner not empty');
        }
        $outboxKeys = ['prefix' => 1, 'lease_seconds' => 1, 'max_attempts' => 1];
        $this->outboxOptions = array_intersect_key($options, $outboxKeys);
        $this->leaseSeconds = max(1, (int) ($options['lease_seconds'] ?? 300));
    }

    /**
     * Delivers until nothing is pending (parked events aside): also waits for events in
     * backoff and for events another worker holds. Returns what it did.
     *
     * @return array{delivered: int, failed: int, parked: int, lost: int, reconnects: int}
     */
    public function drain(): array
    {
        return $this->runUntil(fn (PdoOutbox $outbox): bool => $outbox->counts()['pending'] === 0);
    }

    /**
     * Delivers until $stop says so; it is asked whenever nothing is claimable (a daemon's
     * loop: a signal flag, a deadline).
     *
     * @param \Closure(PdoOutbox): bool $stop
     * @return array{delivered: int, failed: int, parked: int, lost: int, reconnects: int}
     */
    public function runUntil(\Closure $stop): array
    {
        $outageSince = null;
        $backoffMs = self::FIRST_BACKOFF_MS;
        while (true) {
            try {
                $outbox = $this->outbox ??= new PdoOutbox(($this->connect)(), $this->outboxOptions);
                if ($outageSince !== null) {
                    $this->stats['reconnects']++;
                    $this->logger->info('the outbox database is back after {seconds} s', [
                        'seconds' => round(microtime(true) - $outageSince, 1),
                    ]);
                    $outageSince = null;
                    $backoffMs = self::FIRST_BACKOFF_MS;
                }
                $this->settleUnsettled($outbox);
                $this->releaseUnstarted($outbox);
                $events = $outbox->claim($this->owner, $this->batch);
                if ($events === []) {
                    if ($stop($outbox)) {
                        return $this->stats;
                    }
                    usleep($this->idleMs * 1000);
                    continue;
                }
                $this->deliver($outbox, $events);
            } catch (\PDOException $e) {
                $this->outbox = null; // PDO cannot be trusted after a lost connection: a new one
                $outageSince ??= microtime(true);
                if (microtime(true) - $outageSince > $this->outageSeconds) {
                    throw $e;
                }
                $this->logger->warning('the outbox database failed ({error}); retrying in {ms} ms', [
                    'error' => $e->getMessage(),
                    'ms' => $backoffMs,
                ]);
                usleep($backoffMs * 1000);
                $backoffMs = min(self::MAX_BACKOFF_MS, $backoffMs * 2);
            }
        }
    }

    /**
     * Delivers a claimed batch, then settles it. The links are read for the whole batch at
     * once: it holds one event per user, each its user's oldest, so no link changes meanwhile.
     *
     * @param list<OutboxEvent> $events
     */
    private function deliver(PdoOutbox $outbox, array $events): void
    {
        try {
            $links = $outbox->links(array_map(static fn (OutboxEvent $e): string => $e->user->id, $events));
        } catch (\PDOException $e) {
            $this->toRelease = $events; // nothing sent: any worker may take them at once after the outage
            throw $e;
        }
        $extended = microtime(true);
        $databaseLost = false;
        foreach ($events as $i => $event) {
            if (!$databaseLost && microtime(true) - $extended > $this->leaseSeconds / 3) {
                try {
                    $outbox->extendLease($this->owner);
                    $extended = microtime(true);
                } catch (\PDOException) {
                    // Delivering needs no database: finish the batch; the settle waits for it.
                    $databaseLost = true;
                }
            }
            try {
                $outcome = $this->connector->provision($event->user, $event->event, $links[$event->user->id] ?? null);
                $link = $event->event === UserEvent::Deleted ? null : $outcome->link;
                $this->unsettled[] = Settlement::delivered($event, $link);
            } catch (ProvisioningException | GuestTrapException $error) {
                $this->unsettled[] = Settlement::failed($event, $error);
            } catch (\Throwable $e) {
                // Not an answer about this event (a bug, the bridge gone): record what was
                // answered, give the rest back at once, and stop.
                try {
                    $this->settleUnsettled($outbox);
                    foreach (array_slice($events, $i) as $rest) {
                        $outbox->release($rest, $this->owner);
                    }
                } catch (\PDOException) {
                    // Their lease runs out instead.
                }
                throw $e;
            }
        }
        $this->settleUnsettled($outbox);
    }

    /** Records the delivered or failed events not yet recorded (the batch just delivered, or one the database's failure interrupted). */
    private function settleUnsettled(PdoOutbox $outbox): void
    {
        if ($this->unsettled === []) {
            return;
        }
        $results = $outbox->settle($this->owner, $this->unsettled);
        $settled = $this->unsettled;
        $this->unsettled = [];
        foreach ($settled as $s) {
            $result = $results[$s->event->id];
            $this->stats[$result === 'retry' ? 'failed' : $result]++;
            if ($s->error !== null) {
                $this->logger->warning('event {id} of user {user}: {error} ({result})', [
                    'id' => $s->event->id,
                    'user' => $s->event->user->id,
                    'error' => $s->error->getMessage(),
                    'result' => $result,
                ]);
            }
            $this->notify($s->event, $result);
        }
    }

    /** Gives back a batch the database's failure stopped before its delivery began. */
    private function releaseUnstarted(PdoOutbox $outbox): void
    {
        while ($this->toRelease !== []) {
            $outbox->release($this->toRelease[0], $this->owner);
            array_shift($this->toRelease);
        }
    }

    private function notify(OutboxEvent $event, string $result): void
    {
        if ($this->onEvent !== null) {
            ($this->onEvent)($event, $result);
        }
    }
}
