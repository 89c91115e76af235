<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A request the component asks the host to send (WIT `http-request`). The headers include
 * `Authorization`: a transport must never log or echo them.
 */
final class HttpRequest
{
    /**
     * @param string $method `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or another method name
     * @param string $url the absolute URL, percent-encoded
     * @param list<array{0: string, 1: string}> $headers in order; names compare case-insensitively
     * @param string|null $body raw bytes, or null for none
     * @param int $timeoutMs how long the whole exchange may take
     */
    public function __construct(
        public readonly string $method,
        public readonly string $url,
        public readonly array $headers,
        public readonly ?string $body,
        public readonly int $timeoutMs,
    ) {
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

    /** @param array{method: array{tag: string, val?: string}, url: string, headers: list<array{0: string, 1: string}>, body: string|null, timeout-ms: int} $wit */
    public static function fromWit(array $wit): self
    {
        $m = $wit['method'];
        $method = ($m['tag'] ?? '') === 'other' ? (string) $m['val'] : strtoupper((string) $m['tag']);
        $body = $wit['body'] ?? null;
        if ($body !== null) {
            $decoded = base64_decode((string) $body, true);
            if ($decoded === false) {
                throw new BridgeException('the component sent a request body that is not base64');
            }
            $body = $decoded;
        }
        return new self(
            $method,
            (string) $wit['url'],
            array_map(static fn (array $h): array => [(string) $h[0], (string) $h[1]], (array) ($wit['headers'] ?? [])),
            $body,
            (int) ($wit['timeout-ms'] ?? 30000),
        );
    }

    /** @return array{method: array{tag: string, val?: string}, url: string, headers: list<array{0: string, 1: string}>, body: string|null, timeout-ms: int} */
    public function toWit(): array
    {
        $tag = strtolower($this->method);
        $method = in_array($tag, ['get', 'post', 'put', 'patch', 'delete'], true)
            ? ['tag' => $tag]
            : ['tag' => 'other', 'val' => $this->method];
        return [
            'method' => $method,
            'url' => $this->url,
            'headers' => $this->headers,
            'body' => $this->body === null ? null : base64_encode($this->body),
            'timeout-ms' => $this->timeoutMs,
        ];
    }

    /** Never shows header values (Authorization) or the body. */
    public function __debugInfo(): array
    {
        return [
            'method' => $this->method,
            'url' => $this->url,
            'headers' => array_map(static fn (array $h) => $h[0], $this->headers),
            'body_bytes' => $this->body === null ? null : strlen($this->body),
            'timeoutMs' => $this->timeoutMs,
        ];
    }
}
