<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The component's retry classification (WIT `retry-class`), with the WIT names as values
 * ({@see ProvisioningException::retryClass()}): `Permanent` (trying again will not help:
 * fix the configuration or the data), `Backoff` (try again later, with growing delays),
 * `AfterSeconds` (the server named the delay: `retryAfterSeconds`).
 */
enum RetryClass: string
{
    case Permanent = 'permanent';
    case Backoff = 'backoff';
    case AfterSeconds = 'after-seconds';

    /** True when trying again may help. */
    public function isRetryable(): bool
    {
        return $this !== self::Permanent;
    }
}
