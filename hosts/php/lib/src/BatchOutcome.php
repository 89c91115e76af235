<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * What a batch call did (WIT `batch-outcome`): one result per item, in the items' order,
 * each a {@see ProvisionOutcome} or the {@see ProvisioningException} that user failed with
 * (not thrown: one failure does not stop the others).
 */
final class BatchOutcome
{
    /**
     * @param list<ProvisionOutcome|ProvisioningException> $results
     * @param int $requests every request the call made, bulk requests and discovery included
     * @param int $bulkRequests how many of them were `POST /Bulk`
     */
    public function __construct(
        public readonly array $results,
        public readonly int $requests,
        public readonly int $bulkRequests,
    ) {
    }

    /** @param array{results: list<array{tag: string, val: array<string, mixed>}>, requests: int, bulk-requests: int} $wit */
    public static function fromWit(array $wit): self
    {
        $results = [];
        foreach ($wit['results'] ?? [] as $r) {
            $results[] = ($r['tag'] ?? '') === 'ok'
                ? ProvisionOutcome::fromWit($r['val'])
                : ProvisioningException::fromWit((array) ($r['val'] ?? []));
        }
        return new self($results, (int) ($wit['requests'] ?? 0), (int) ($wit['bulk-requests'] ?? 0));
    }

    /** @return array{results: list<array{tag: string, val: array<string, mixed>}>, requests: int, bulk-requests: int} */
    public function toWit(): array
    {
        return [
            'results' => array_map(
                static fn (ProvisionOutcome|ProvisioningException $r): array => $r instanceof ProvisionOutcome
                    ? ['tag' => 'ok', 'val' => $r->toWit()]
                    : ['tag' => 'err', 'val' => $r->toWit()],
                $this->results,
            ),
            'requests' => $this->requests,
            'bulk-requests' => $this->bulkRequests,
        ];
    }
}
