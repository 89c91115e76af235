<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What listing the remote users came to (WIT `remote-listing`). */
final class RemoteListing
{
    public function __construct(
        /** How many remote users were listed. */
        public readonly int $users,
        /** How many requests the listing took. */
        public readonly int $requests,
    ) {
    }

    /** @param array{users: int, requests: int} $wit */
    public static function fromWit(array $wit): self
    {
        return new self((int) $wit['users'], (int) $wit['requests']);
    }

    /** @return array{users: int, requests: int} */
    public function toWit(): array
    {
        return ['users' => $this->users, 'requests' => $this->requests];
    }
}
