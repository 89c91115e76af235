<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * What the host remembers about a provisioned user between calls (WIT `link`): store it
 * after every call and hand it back on the next, so updates send a minimal PATCH (with
 * `If-Match`) and nothing at all when nothing changed.
 */
final class Link
{
    /**
     * @param string $remoteId the remote SCIM `id`
     * @param string|null $version the remote `meta.version` (ETag), when the server gave one
     * @param string|null $snapshot the JSON of the resource as last provisioned
     */
    public function __construct(
        public readonly string $remoteId,
        public readonly ?string $version = null,
        public readonly ?string $snapshot = null,
    ) {
    }

    /** @return array{remote-id: string, version: string|null, snapshot: string|null} */
    public function toWit(): array
    {
        return ['remote-id' => $this->remoteId, 'version' => $this->version, 'snapshot' => $this->snapshot];
    }

    /** @param array{remote-id: string, version?: string|null, snapshot?: string|null} $wit */
    public static function fromWit(array $wit): self
    {
        return new self((string) $wit['remote-id'], $wit['version'] ?? null, $wit['snapshot'] ?? null);
    }
}
