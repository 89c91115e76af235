<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** Bulk limits a server advertises (WIT `bulk-limits`). */
final class BulkLimits
{
    public function __construct(
        public readonly int $maxOperations,
        public readonly int $maxPayloadSize,
    ) {
    }

    /** @param array{max-operations: int, max-payload-size: int} $wit */
    public static function fromWit(array $wit): self
    {
        return new self((int) $wit['max-operations'], (int) $wit['max-payload-size']);
    }

    /** @return array{max-operations: int, max-payload-size: int} */
    public function toWit(): array
    {
        return ['max-operations' => $this->maxOperations, 'max-payload-size' => $this->maxPayloadSize];
    }
}
