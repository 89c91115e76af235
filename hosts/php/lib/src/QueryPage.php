<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What a directory search found (WIT `query-page`). */
final class QueryPage
{
    /**
     * @param int $totalResults how many match in all
     * @param list<StoredResource> $resources the requested page
     */
    public function __construct(public readonly int $totalResults, public readonly array $resources)
    {
    }

    /** @return array{total-results: int, resources: list<array<string, string>>} */
    public function toWit(): array
    {
        return [
            'total-results' => $this->totalResults,
            'resources' => array_map(static fn (StoredResource $r) => $r->toWit(), $this->resources),
        ];
    }
}
