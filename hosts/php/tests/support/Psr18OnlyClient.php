<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use Psr\Http\Client\ClientInterface;
use Psr\Http\Message\RequestInterface;
use Psr\Http\Message\ResponseInterface;

/**
 * A real PSR-18 client that is nothing but PSR-18: it hands each request to a Guzzle
 * client's `sendRequest()` (real HTTP), and hides that it is Guzzle, so Psr18Transport
 * takes its path for clients it knows nothing about (no per-request options, the
 * deadline checked on the answer).
 */
final class Psr18OnlyClient implements ClientInterface
{
    public function __construct(private readonly ClientInterface $inner)
    {
    }

    public function sendRequest(RequestInterface $request): ResponseInterface
    {
        return $this->inner->sendRequest($request);
    }
}
