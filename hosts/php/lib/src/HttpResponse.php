<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What the server answered, whatever the status (WIT `http-response`). */
final class HttpResponse
{
    /**
     * @param list<array{0: string, 1: string}> $headers in order
     * @param string $body raw bytes; empty when there is none
     */
    public function __construct(
        public readonly int $status,
        public readonly array $headers,
        public readonly string $body,
    ) {
    }

    /** @return array{status: int, headers: list<array{0: string, 1: string}>, body: string} */
    public function toWit(): array
    {
        return [
            'status' => $this->status,
            // Header values reach the guest as strings: bytes that are not UTF-8 are replaced.
            'headers' => array_map(
                static fn (array $h): array => [mb_scrub((string) $h[0], 'UTF-8'), mb_scrub((string) $h[1], 'UTF-8')],
                $this->headers,
            ),
            'body' => base64_encode($this->body),
        ];
    }

    /** @param array{status: int, headers: list<array{0: string, 1: string}>, body: string} $wit */
    public static function fromWit(array $wit): self
    {
        $body = (string) base64_decode((string) $wit['body'], true);
        return new self((int) $wit['status'], (array) $wit['headers'], $body);
    }
}
