<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A queued user event a worker holds ({@see PdoOutbox::claim()}): deliver it with
 * {@see Connector::provision()} (or in a {@see BatchItem}), then complete or fail it.
 */
final class OutboxEvent
{
    /**
     * @param int $id the outbox row (ascending in enqueue order)
     * @param CmsUser $user the user as they were when the event was queued
     * @param int $attempts failed attempts before this one
     * @param int $createdAt when it was queued (Unix seconds)
     */
    public function __construct(
        public readonly int $id,
        public readonly UserEvent $event,
        public readonly CmsUser $user,
        public readonly int $attempts,
        public readonly int $createdAt,
    ) {
    }
}
