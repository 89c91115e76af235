<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** The result of one provisioning call (WIT `provision-outcome`). */
final class ProvisionOutcome
{
    /**
     * @param Action $action what was done
     * @param string|null $reason why, for `skipped` and `unlinked`
     * @param Link|null $link the link to store from now on; null when the user is no longer linked
     * @param string|null $location the remote resource's `meta.location`, when known
     * @param int $requests how many HTTP requests the call made
     */
    public function __construct(
        public readonly Action $action,
        public readonly ?string $reason,
        public readonly ?Link $link,
        public readonly ?string $location,
        public readonly int $requests,
    ) {
    }

    /**
     * @param array{action: string, reason?: string|null, link?: array<string, mixed>|null,
     *     location?: string|null, requests: int} $wit
     */
    public static function fromWit(array $wit): self
    {
        return new self(
            Action::from((string) $wit['action']),
            $wit['reason'] ?? null,
            isset($wit['link']) ? Link::fromWit($wit['link']) : null,
            $wit['location'] ?? null,
            (int) ($wit['requests'] ?? 0),
        );
    }

    /** @return array{action: string, reason: string|null, link: array<string, mixed>|null, location: string|null, requests: int} */
    public function toWit(): array
    {
        return [
            'action' => $this->action->value,
            'reason' => $this->reason,
            'link' => $this->link?->toWit(),
            'location' => $this->location,
            'requests' => $this->requests,
        ];
    }
}
