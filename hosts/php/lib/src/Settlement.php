<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * One claimed event's outcome, for {@see PdoOutbox::settle()}: delivered (with the link to
 * keep, or null to forget it), failed (with the error that decides its retry or parking), or
 * parked by hand with a reason.
 */
final class Settlement
{
    private function __construct(
        public readonly OutboxEvent $event,
        public readonly ?Link $link,
        public readonly ProvisioningException|GuestTrapException|null $error,
        public readonly ?string $parkReason,
    ) {
    }

    /** Delivered: the event leaves the outbox; $link is saved for its user (null: forgotten, a deleted remote user). */
    public static function delivered(OutboxEvent $event, ?Link $link): self
    {
        return new self($event, $link, null, null);
    }

    /** Failed: retried after the server's Retry-After or a backoff, or parked (permanent, or out of attempts). */
    public static function failed(OutboxEvent $event, ProvisioningException|GuestTrapException $error): self
    {
        return new self($event, null, $error, null);
    }

    /** Parked with $reason, its attempts unchanged: out of the queue; the user's next event goes on. */
    public static function parked(OutboxEvent $event, string $reason): self
    {
        return new self($event, null, null, $reason);
    }

    public function isDelivered(): bool
    {
        return $this->error === null && $this->parkReason === null;
    }
}
