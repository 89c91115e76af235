<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimProvisioner\HttpRequest;
use ScimProvisioner\HttpResponse;
use ScimProvisioner\Transport;

/**
 * A transport that fails its first $failures requests the way a CMS HTTP client can (a
 * TransportException, or any other exception from a buggy client), then carries the rest
 * through the real transport it wraps.
 */
final class FlakyTransport implements Transport
{
    public function __construct(private readonly Transport $inner, private int $failures, private readonly \Throwable $error)
    {
    }

    public function send(HttpRequest $request): HttpResponse
    {
        if ($this->failures > 0) {
            $this->failures--;
            throw $this->error;
        }
        return $this->inner->send($request);
    }
}
