<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** One HTTP request to the SCIM server, relative to its base URL (WIT `server-request`). */
final class Request
{
    /**
     * @param string $method such as `GET`
     * @param string $path below the base URL, such as `/Users/2819c223`
     * @param string $query the raw, percent-encoded query string, without `?`
     * @param list<array{0: string, 1: string}> $headers
     * @param string $body raw bytes; empty when there is none
     */
    public function __construct(
        public readonly string $method,
        public readonly string $path,
        public readonly string $query = '',
        public readonly array $headers = [],
        public readonly string $body = '',
    ) {
    }

    /**
     * The current PHP request (php -S, FPM, Apache), with the path relative to $basePath;
     * null when the request is not under $basePath. Reads at most $maxBody + 1 bytes of the
     * body, so the component can answer 413 itself.
     */
    public static function fromGlobals(string $basePath, int $maxBody = 1024 * 1024): ?self
    {
        $uri = (string) ($_SERVER['REQUEST_URI'] ?? '/');
        [$path, $query] = array_pad(explode('?', $uri, 2), 2, '');
        $basePath = rtrim($basePath, '/');
        if ($path !== $basePath && !str_starts_with($path, $basePath . '/')) {
            return null;
        }
        $relative = substr($path, strlen($basePath));
        $headers = [];
        foreach ($_SERVER as $key => $value) {
            if (!is_string($value)) {
                continue;
            }
            if (str_starts_with((string) $key, 'HTTP_')) {
                $name = str_replace(' ', '-', ucwords(strtolower(str_replace('_', ' ', substr((string) $key, 5)))));
                $headers[] = [$name, $value];
            } elseif ($key === 'CONTENT_TYPE' || $key === 'CONTENT_LENGTH') {
                $headers[] = [$key === 'CONTENT_TYPE' ? 'Content-Type' : 'Content-Length', $value];
            }
        }
        // php -S and some SAPIs pass Authorization only through getallheaders().
        if (function_exists('getallheaders')) {
            $seen = array_map(static fn (array $h): string => strtolower($h[0]), $headers);
            foreach (getallheaders() as $name => $value) {
                if (!in_array(strtolower((string) $name), $seen, true)) {
                    $headers[] = [(string) $name, (string) $value];
                }
            }
        }
        $in = fopen('php://input', 'rb');
        $body = $in === false ? '' : (string) stream_get_contents($in, $maxBody + 1);
        return new self(
            (string) ($_SERVER['REQUEST_METHOD'] ?? 'GET'),
            $relative === '' ? '/' : $relative,
            $query,
            $headers,
            $body,
        );
    }

    /**
     * A PSR-7 server request (from Guzzle's `ServerRequest::fromGlobals()`, nyholm/psr7-server,
     * Drupal's or Symfony's PSR-7 bridge), with the path relative to $basePath; null when the
     * request is not under $basePath. Reads at most $maxBody + 1 bytes of the body, so the
     * component can answer 413 itself. Path and query stay percent-encoded, as in the URL.
     */
    public static function fromServerRequest(
        \Psr\Http\Message\ServerRequestInterface $request,
        string $basePath,
        int $maxBody = 1024 * 1024,
    ): ?self {
        $path = $request->getUri()->getPath();
        $path = $path === '' ? '/' : $path;
        $basePath = rtrim($basePath, '/');
        if ($path !== $basePath && !str_starts_with($path, $basePath . '/')) {
            return null;
        }
        $relative = substr($path, strlen($basePath));
        $headers = [];
        foreach ($request->getHeaders() as $name => $values) {
            foreach ($values as $value) {
                $headers[] = [(string) $name, (string) $value];
            }
        }
        $stream = $request->getBody();
        if ($stream->isSeekable()) {
            $stream->rewind();
        }
        $body = '';
        while (!$stream->eof() && strlen($body) <= $maxBody) {
            $chunk = $stream->read($maxBody + 1 - strlen($body));
            if ($chunk === '') {
                break;
            }
            $body .= $chunk;
        }
        return new self(
            $request->getMethod(),
            $relative === '' ? '/' : $relative,
            $request->getUri()->getQuery(),
            $headers,
            $body,
        );
    }

    /** @return array{method: string, path: string, query: string, headers: list<array{0: string, 1: string}>, body: string} */
    public function toWit(): array
    {
        return [
            // Strings must be UTF-8: bytes that are not (a client's raw, unencoded bytes) are replaced.
            'method' => mb_scrub($this->method, 'UTF-8'),
            'path' => mb_scrub($this->path, 'UTF-8'),
            'query' => mb_scrub($this->query, 'UTF-8'),
            'headers' => array_map(
                static fn (array $h): array => [mb_scrub((string) $h[0], 'UTF-8'), mb_scrub((string) $h[1], 'UTF-8')],
                $this->headers,
            ),
            'body' => base64_encode($this->body),
        ];
    }

    /** @param array{method: string, path: string, query: string, headers: list<array{0: string, 1: string}>, body: string} $wit */
    public static function fromWit(array $wit): self
    {
        $body = base64_decode((string) ($wit['body'] ?? ''), true);
        if ($body === false) {
            throw new InvalidArgumentException('the request body is not base64');
        }
        return new self(
            (string) $wit['method'],
            (string) $wit['path'],
            (string) ($wit['query'] ?? ''),
            array_map(static fn (array $h): array => [(string) $h[0], (string) $h[1]], (array) ($wit['headers'] ?? [])),
            $body
        );
    }

    /** Never shows header values (Authorization). */
    public function __debugInfo(): array
    {
        return ['method' => $this->method, 'path' => $this->path, 'query' => $this->query,
            'headers' => array_map(static fn (array $h) => $h[0], $this->headers), 'body_bytes' => strlen($this->body)];
    }
}
