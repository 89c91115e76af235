<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** The SCIM server's answer (WIT `server-response`). */
final class Response
{
    /**
     * @param list<array{0: string, 1: string}> $headers
     */
    public function __construct(
        public readonly int $status,
        public readonly array $headers,
        public readonly string $body,
    ) {
    }

    /** @param array{status: int, headers: list<array{0: string, 1: string}>, body: string} $wit */
    public static function fromWit(array $wit): self
    {
        $body = base64_decode((string) ($wit['body'] ?? ''), true);
        if ($body === false) {
            throw new BridgeException('the component answered with a body that is not base64');
        }
        return new self(
            (int) $wit['status'],
            array_map(static fn (array $h): array => [(string) $h[0], (string) $h[1]], (array) $wit['headers']),
            $body,
        );
    }

    /** @return array{status: int, headers: list<array{0: string, 1: string}>, body: string} */
    public function toWit(): array
    {
        return ['status' => $this->status, 'headers' => $this->headers, 'body' => base64_encode($this->body)];
    }

    /** The first value of a header, compared case-insensitively. */
    public function header(string $name): ?string
    {
        foreach ($this->headers as [$n, $v]) {
            if (strcasecmp($n, $name) === 0) {
                return $v;
            }
        }
        return null;
    }

    /**
     * A SCIM error response (RFC 7644 §3.12), for failures outside the component such as a trap.
     */
    public static function error(int $status, string $detail): self
    {
        $body = json_encode([
            'schemas' => ['urn:ietf:params:scim:api:messages:2.0:Error'],
            'status' => (string) $status,
            'detail' => $detail,
        ], JSON_UNESCAPED_SLASHES);
        return new self($status, [['Content-Type', 'application/scim+json']], (string) $body);
    }

    /**
     * This answer as a PSR-7 response, built with the caller's PSR-17 factories (nyholm/psr7's
     * Psr17Factory and guzzlehttp/psr7's HttpFactory are both). Without a stream factory the
     * body is written into the new response's own body stream. Content-Length is set from
     * the body.
     */
    public function toPsrResponse(
        \Psr\Http\Message\ResponseFactoryInterface $responseFactory,
        ?\Psr\Http\Message\StreamFactoryInterface $streamFactory = null,
    ): \Psr\Http\Message\ResponseInterface {
        $response = $responseFactory->createResponse($this->status);
        foreach ($this->headers as [$name, $value]) {
            if (strcasecmp($name, 'content-length') !== 0) {
                $response = $response->withAddedHeader($name, $value);
            }
        }
        $response = $response->withHeader('Content-Length', (string) strlen($this->body));
        if ($streamFactory === null && $responseFactory instanceof \Psr\Http\Message\StreamFactoryInterface) {
            $streamFactory = $responseFactory;
        }
        if ($streamFactory !== null) {
            return $response->withBody($streamFactory->createStream($this->body));
        }
        $response->getBody()->write($this->body);
        return $response;
    }

    /** Sends status, headers and body through PHP's SAPI (php -S, FPM). */
    public function send(): void
    {
        http_response_code($this->status);
        foreach ($this->headers as [$name, $value]) {
            if (strcasecmp($name, 'content-length') !== 0) {
                header("{$name}: {$value}", false);
            }
        }
        header('Content-Length: ' . strlen($this->body));
        echo $this->body;
    }
}
