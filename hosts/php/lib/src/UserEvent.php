<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What happened to a user in the CMS (WIT `user-event`). */
enum UserEvent: string
{
    case Created = 'created';
    case Updated = 'updated';
    case Blocked = 'blocked';
    case Unblocked = 'unblocked';
    case Deleted = 'deleted';
    /** A scheduled reconcile: bring the remote user in line with the CMS. */
    case Reconcile = 'reconcile';

    /** An event from its name, with a clear error for anything else. */
    public static function of(self|string $event): self
    {
        if ($event instanceof self) {
            return $event;
        }
        return self::tryFrom($event) ?? throw new InvalidArgumentException(
            "unknown user event '{$event}'; use one of "
                . implode(', ', array_map(static fn (self $e) => $e->value, self::cases()))
        );
    }
}
