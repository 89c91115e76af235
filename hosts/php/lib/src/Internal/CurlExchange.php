<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

/**
 * @internal One prepared curl exchange: the handle and what its callbacks collected.
 */
final class CurlExchange
{
    /** @var list<array{0: string, 1: string}> the final response's headers */
    public array $headers = [];
    public string $body = '';
    /** True when the body passed the cap and the transfer was aborted. */
    public bool $overflow = false;

    public function __construct(public readonly \CurlHandle $handle, public readonly int $maxBodyBytes)
    {
    }
}
