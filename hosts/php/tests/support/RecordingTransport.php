<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimProvisioner\HttpRequest;
use ScimProvisioner\HttpResponse;
use ScimProvisioner\Transport;

/**
 * A real transport (it delegates every request to the wrapped one, normally a
 * CurlTransport) that remembers the method and URL of each request, so tests can say
 * which requests a call made (a PATCH, not a PUT; nothing at all when nothing changed).
 */
final class RecordingTransport implements Transport
{
    /** @var list<array{0: string, 1: string}> method and URL */
    public array $sent = [];

    public function __construct(private readonly Transport $inner)
    {
    }

    public function send(HttpRequest $request): HttpResponse
    {
        $this->sent[] = [$request->method, $request->url];
        return $this->inner->send($request);
    }

    /** @return list<string> the methods sent since the last call */
    public function take(): array
    {
        $methods = array_map(static fn (array $s): string => $s[0], $this->sent);
        $this->sent = [];
        return $methods;
    }
}
