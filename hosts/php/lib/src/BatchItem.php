<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** One user to provision in a batch (WIT `batch-item`). */
final class BatchItem
{
    public readonly UserEvent $event;

    public function __construct(
        public readonly CmsUser $user,
        UserEvent|string $event,
        /** What the host stored after the last call for this user, if any. */
        public readonly ?Link $link = null,
    ) {
        $this->event = UserEvent::of($event);
    }

    /** @return array{user: array<string, mixed>, event: string, link: array<string, mixed>|null} */
    public function toWit(): array
    {
        return ['user' => $this->user->toWit(), 'event' => $this->event->value, 'link' => $this->link?->toWit()];
    }

    /** @param array{user: array<string, mixed>, event: string, link?: array<string, mixed>|null} $wit */
    public static function fromWit(array $wit): self
    {
        return new self(
            CmsUser::fromWit($wit['user']),
            (string) $wit['event'],
            isset($wit['link']) ? Link::fromWit($wit['link']) : null,
        );
    }
}
