<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** A resource as a {@see Directory} stores it (WIT `stored-resource`). */
final class StoredResource
{
    /**
     * @param string $id the id the host assigned; case-sensitive and stable
     * @param string $version the version, used as the ETag (`W/"3"`); changes on every write
     * @param string $created RFC 3339
     * @param string $lastModified RFC 3339
     * @param string $json the SCIM JSON object (its `id` and `meta` are ignored)
     */
    public function __construct(
        public readonly string $id,
        public readonly string $version,
        public readonly string $created,
        public readonly string $lastModified,
        public readonly string $json,
    ) {
    }

    /** @return array{id: string, version: string, created: string, last-modified: string, json: string} */
    public function toWit(): array
    {
        return [
            'id' => $this->id,
            'version' => $this->version,
            'created' => $this->created,
            'last-modified' => $this->lastModified,
            'json' => $this->json,
        ];
    }

    /** @param array{id: string, version: string, created: string, last-modified: string, json: string} $wit */
    public static function fromWit(array $wit): self
    {
        return new self(
            (string) $wit['id'],
            (string) $wit['version'],
            (string) $wit['created'],
            (string) $wit['last-modified'],
            (string) $wit['json'],
        );
    }
}
