<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What the SCIM server said it supports (WIT `server-capabilities`). */
final class ServerCapabilities
{
    /**
     * @param bool $discovered true when `/ServiceProviderConfig` answered; false when the
     *     connector fell back to `GET /Users`
     */
    public function __construct(
        public readonly bool $discovered,
        public readonly bool $patch,
        public readonly ?BulkLimits $bulk,
        public readonly ?int $filterMaxResults,
        public readonly bool $etag,
        public readonly bool $sort,
        public readonly bool $changePassword,
    ) {
    }

    /** @param array<string, mixed> $wit */
    public static function fromWit(array $wit): self
    {
        return new self(
            (bool) $wit['discovered'],
            (bool) $wit['patch'],
            isset($wit['bulk']) ? BulkLimits::fromWit($wit['bulk']) : null,
            isset($wit['filter-max-results']) ? (int) $wit['filter-max-results'] : null,
            (bool) $wit['etag'],
            (bool) $wit['sort'],
            (bool) $wit['change-password'],
        );
    }

    /** @return array<string, mixed> */
    public function toWit(): array
    {
        return [
            'discovered' => $this->discovered,
            'patch' => $this->patch,
            'bulk' => $this->bulk?->toWit(),
            'filter-max-results' => $this->filterMaxResults,
            'etag' => $this->etag,
            'sort' => $this->sort,
            'change-password' => $this->changePassword,
        ];
    }
}
