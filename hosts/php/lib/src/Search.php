<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** One page of a directory search (WIT `search`). */
final class Search
{
    /**
     * @param string|null $filter a SCIM filter in canonical form (RFC 7644 §3.4.2.2); null for all
     * @param int $startIndex 1-based index of the first result
     * @param int $count the most results to return; 0 asks only for the total
     * @param string|null $sortBy the attribute path to sort by; null for the store's stable order
     */
    public function __construct(
        public readonly ?string $filter,
        public readonly int $startIndex,
        public readonly int $count,
        public readonly ?string $sortBy,
        public readonly bool $sortDescending,
    ) {
    }

    /** @param array{filter: string|null, start-index: int, count: int, sort-by: string|null, sort-descending: bool} $wit */
    public static function fromWit(array $wit): self
    {
        return new self(
            $wit['filter'] ?? null,
            (int) $wit['start-index'],
            (int) $wit['count'],
            $wit['sort-by'] ?? null,
            (bool) $wit['sort-descending'],
        );
    }

    /** @return array{filter: string|null, start-index: int, count: int, sort-by: string|null, sort-descending: bool} */
    public function toWit(): array
    {
        return [
            'filter' => $this->filter,
            'start-index' => $this->startIndex,
            'count' => $this->count,
            'sort-by' => $this->sortBy,
            'sort-descending' => $this->sortDescending,
        ];
    }
}
