<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * One worker draining a {@see PdoOutbox} into the SCIM server of a {@see Connector}: claims
 * a batch, delivers each event, records it (the link saved, the event removed) or its
 * failure (backoff, parking). Run as many as you like, in processes on any number of hosts
 * sharing the database; each user's events still go out one at a time and in order.
 *
 * **The database going away** (a restart, a failover, a network cut) does not stop it. On
 * a `PDOException` it drops the connection, waits (0.4 s, doubling up to 6.4 s), opens a new
 * one with `$connect` and goes on, for up to `outage_seconds` (default 600) without a
 * successful reconnect, then gives up by rethrowing. What it had in hand when the database
 * went away:
 * - an event already delivered but not yet recorded is recorded after the reconnect, if the
 *   worker still holds it (its lease has not run out): the server is not written twice;
 *   otherwise another worker has it and sends it again (at least once on the wire; the
 *   component finds the user it created, so the server still has the user once);
 * - the events of the batch not yet delivered are released (under the same fence), so any
 *   worker can take them at once instead of after the lease.
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
    /** @var array{0: OutboxEvent, 1: ?Link}|null delivered; recording it was cut by the database's failure */
    private ?array $unrecorded = null;
    /** @var list<OutboxEvent> claimed, not delivered, to give back once the database answers */
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
                $this->recordUnrecorded($outbox);
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

    /** @param list<OutboxEvent> $events */
    private function deliver(PdoOutbox $outbox, array $events): void
    {
        foreach ($events as $i => $event) {
            try {
                try {
                    $link = $outbox->link($event->user->id);
                    $outcome = $this->connector->provision($event->user, $event->event, $link);
                } catch (ProvisioningException | GuestTrapException $error) {
                    $result = $outbox->fail($event, $this->owner, $error);
                    $this->stats[$result === 'retry' ? 'failed' : $result]++;
                    $this->logger->warning('event {id} of user {user}: {error} ({result})', [
                        'id' => $event->id,
                        'user' => $event->user->id,
                        'error' => $error->getMessage(),
                        'result' => $result,
                    ]);
                    $this->notify($event, $result);
                    continue;
                }
                $link = $event->event === UserEvent::Deleted ? null : $outcome->link;
                $this->unrecorded = [$event, $link];
                $this->recordUnrecorded($outbox);
            } catch (\PDOException $e) {
                $this->releaseLater(array_slice($events, $i + ($this->unrecorded === null ? 0 : 1)));
                throw $e;
            }
        }
    }

    /** Records the delivered event the database's failure interrupted, if any. */
    private function recordUnrecorded(PdoOutbox $outbox): void
    {
        if ($this->unrecorded === null) {
            $this->releasePending($outbox);
            return;
        }
        [$event, $link] = $this->unrecorded;
        $done = $outbox->complete($event, $this->owner, $link);
        $this->unrecorded = null;
        $this->stats[$done ? 'delivered' : 'lost']++;
        $this->notify($event, $done ? 'delivered' : 'lost');
        $this->releasePending($outbox);
    }

    /** @param list<OutboxEvent> $events */
    private function releaseLater(array $events): void
    {
        $this->toRelease = [...$this->toRelease, ...$events];
    }

    private function releasePending(PdoOutbox $outbox): void
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
