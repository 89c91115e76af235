<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\CurlErrors;
use ScimProvisioner\Internal\CurlExchange;

/**
 * {@see Transport} on ext-curl: TLS verified (peer and host), the request's own timeout, no
 * redirects, only the configured origin (scheme, host, port; anything else is `denied`),
 * response bodies capped (32 MiB by default; more is an `other` error), and nothing logged
 * but method, URL, status and time (never a header value, never a body).
 *
 * Options:
 * - `ca_file`: a CA bundle for TLS verification (default: the system's);
 * - `proxy`: a proxy URL, or '' for none (default: curl's, i.e. the *_proxy environment);
 * - `user_agent`: the User-Agent header (default `scim-provisioner-php/0.1`);
 * - `max_body_bytes`: the response body cap;
 * - `token_url`: an OAuth 2.0 token endpoint, whose origin is allowed beside base_url's (the
 *   connector sets it when its configuration has `auth` `oauth2`).
 *
 * @phpstan-type CurlOptions array{ca_file?: string, proxy?: string, user_agent?: string, max_body_bytes?: int,
 *     token_url?: string}
 */
class CurlTransport implements Transport
{
    public const MAX_BODY_BYTES = 32 * 1024 * 1024;

    /** @var list<array{0: string, 1: string, 2: int}> scheme, host, port: base_url's, then token_url's */
    private readonly array $origins;
    private readonly int $maxBodyBytes;
    /** @var list<\CurlHandle> idle handles: reused (curl_reset keeps their connections alive) */
    private array $idle = [];

    private readonly Logger $logger;

    /**
     * @param string $baseUrl the SCIM base URL; its origin is the only one requests may go to
     * @param array{ca_file?: string, proxy?: string, user_agent?: string, max_body_bytes?: int,
     *     token_url?: string} $options
     * @param Logger|\Psr\Log\LoggerInterface|null $logger method, URL, status and time only
     */
    public function __construct(
        string $baseUrl,
        private readonly array $options = [],
        Logger|\Psr\Log\LoggerInterface|null $logger = null,
    ) {
        $this->logger = PsrLoggerAdapter::wrap($logger);
        if (!extension_loaded('curl')) {
            throw new BridgeException('ext-curl is not loaded: install php8.2-curl (or enable extension=curl)');
        }
        $this->origins = self::allowedOrigins($baseUrl, $options['token_url'] ?? null);
        $this->maxBodyBytes = (int) ($options['max_body_bytes'] ?? self::MAX_BODY_BYTES);
    }

    public function send(HttpRequest $request): HttpResponse
    {
        $exchange = $this->prepare($request);
        $started = hrtime(true);
        curl_exec($exchange->handle);
        $errno = curl_errno($exchange->handle);
        return $this->complete($request, $exchange, $errno, curl_error($exchange->handle), $started);
    }

    /**
     * Checks the request and sets a curl handle up for it (for {@see Concurrent}'s curl_multi).
     *
     * @throws TransportException `denied` or `invalid-url`
     * @internal
     */
    public function prepare(HttpRequest $request): CurlExchange
    {
        $origin = self::originOf($request->url);
        if ($origin === null) {
            throw new TransportException(
                'invalid-url',
                'only absolute http and https URLs are allowed: ' . self::safeUrl($request->url),
            );
        }
        if (!in_array($origin, $this->origins, true)) {
            throw new TransportException('denied', self::originText($origin) . ' is not the configured SCIM origin');
        }
        // Handles are reused, so connections stay alive across requests.
        $handle = array_pop($this->idle);
        if ($handle === null) {
            $handle = curl_init();
        } else {
            curl_reset($handle);
        }
        $exchange = new CurlExchange($handle, $this->maxBodyBytes);
        $headers = [];
        $hasContentType = false;
        foreach ($request->headers as [$name, $value]) {
            if (preg_match('/[\r\n]/', $name . $value)) {
                throw new TransportException('other', "header {$name} holds a line break");
            }
            $hasContentType = $hasContentType || strcasecmp($name, 'content-type') === 0;
            $headers[] = "{$name}: {$value}";
        }
        // curl adds nothing of its own: no Expect: 100-continue, no form Content-Type.
        $headers[] = 'Expect:';
        if (!$hasContentType) {
            $headers[] = 'Content-Type:';
        }
        $options = [
            CURLOPT_URL => $request->url,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_SSL_VERIFYPEER => true,
            CURLOPT_SSL_VERIFYHOST => 2,
            CURLOPT_TIMEOUT_MS => max(1, $request->timeoutMs),
            CURLOPT_CONNECTTIMEOUT_MS => max(1, $request->timeoutMs),
            CURLOPT_NOSIGNAL => true,
            CURLOPT_USERAGENT => $this->options['user_agent'] ?? 'scim-provisioner-php/0.1',
            CURLOPT_HEADERFUNCTION => static function (\CurlHandle $h, string $line) use ($exchange): int {
                $trimmed = rtrim($line, "\r\n");
                if (str_starts_with($trimmed, 'HTTP/')) {
                    $exchange->headers = []; // a new response (after 100 Continue): start over
                } elseif ($trimmed !== '' && str_contains($trimmed, ':')) {
                    [$name, $value] = explode(':', $trimmed, 2);
                    $exchange->headers[] = [trim($name), trim($value)];
                }
                return strlen($line);
            },
            CURLOPT_WRITEFUNCTION => static function (\CurlHandle $h, string $chunk) use ($exchange): int {
                if (strlen($exchange->body) + strlen($chunk) > $exchange->maxBodyBytes) {
                    $exchange->overflow = true;
                    return 0; // aborts the transfer (CURLE_WRITE_ERROR)
                }
                $exchange->body .= $chunk;
                return strlen($chunk);
            },
        ];
        if (isset($this->options['ca_file'])) {
            $options[CURLOPT_CAINFO] = $this->options['ca_file'];
        }
        if (isset($this->options['proxy'])) {
            $options[CURLOPT_PROXY] = $this->options['proxy'];
        }
        switch ($request->method) {
            case 'GET':
                $options[CURLOPT_HTTPGET] = true;
                break;
            case 'HEAD':
                $options[CURLOPT_NOBODY] = true;
                break;
            default:
                $options[CURLOPT_CUSTOMREQUEST] = $request->method;
        }
        if ($request->body !== null) {
            if ($request->method === 'GET') {
                $options[CURLOPT_CUSTOMREQUEST] = 'GET';
            }
            $options[CURLOPT_POSTFIELDS] = $request->body;
        }
        if (!curl_setopt_array($handle, $options)) {
            throw new TransportException('other', 'curl refused the request options: ' . curl_error($handle));
        }
        return $exchange;
    }

    /** Keeps a finished exchange's handle for the next request. */
    private function recycle(CurlExchange $exchange): void
    {
        if (count($this->idle) < 16) {
            $this->idle[] = $exchange->handle;
        }
    }

    /**
     * The response of a finished exchange, or its failure as the WIT case.
     *
     * @throws TransportException
     * @internal
     */
    public function complete(
        HttpRequest $request,
        CurlExchange $exchange,
        int $errno,
        string $error,
        int $startedNs,
    ): HttpResponse {
        $ms = intdiv(hrtime(true) - $startedNs, 1_000_000);
        $status = (int) curl_getinfo($exchange->handle, CURLINFO_RESPONSE_CODE);
        $this->recycle($exchange);
        $what = $request->method . ' ' . self::safeUrl($request->url);
        if ($exchange->overflow) {
            $this->logger->warning("{$what}: response body larger than {$exchange->maxBodyBytes} bytes; dropped");
            throw new TransportException('other', "the response body is larger than {$exchange->maxBodyBytes} bytes");
        }
        if ($errno !== 0) {
            $case = CurlErrors::caseOf($errno);
            $this->logger->info("{$what}: {$case} after {$ms} ms ({$error})");
            throw new TransportException($case, $case === 'timeout' ? '' : $error);
        }
        $this->logger->debug("{$what} -> {$status} ({$ms} ms)");
        return new HttpResponse($status, $exchange->headers, $exchange->body);
    }

    /**
     * The origins a transport may reach: base_url's, and an OAuth 2.0 token endpoint's.
     *
     * @return list<array{0: string, 1: string, 2: int}>
     * @throws ProvisioningException `invalid-config` when either is not an absolute http(s) URL
     * @internal
     */
    public static function allowedOrigins(string $baseUrl, ?string $tokenUrl): array
    {
        $origins = [];
        foreach (['base_url' => $baseUrl, 'token_url' => $tokenUrl] as $name => $url) {
            if ($url === null) {
                continue;
            }
            $origin = self::originOf($url);
            if ($origin === null) {
                throw ProvisioningException::invalidConfig("{$name} {$url} is not an absolute http(s) URL");
            }
            $origins[] = $origin;
        }
        return $origins;
    }

    /**
     * scheme, host, port of an absolute http(s) URL; null for anything else.
     *
     * @return array{0: string, 1: string, 2: int}|null
     */
    public static function originOf(string $url): ?array
    {
        $parts = parse_url($url);
        if ($parts === false || !isset($parts['scheme'], $parts['host'])) {
            return null;
        }
        $scheme = strtolower($parts['scheme']);
        if ($scheme !== 'http' && $scheme !== 'https') {
            return null;
        }
        $port = $parts['port'] ?? ($scheme === 'https' ? 443 : 80);
        return [$scheme, strtolower($parts['host']), (int) $port];
    }

    /** @param array{0: string, 1: string, 2: int} $origin */
    private static function originText(array $origin): string
    {
        return "{$origin[0]}://{$origin[1]}:{$origin[2]}";
    }

    /** The URL without user info (which could hold a password). */
    private static function safeUrl(string $url): string
    {
        return preg_replace('#^([a-z][a-z0-9+.-]*://)[^/@]*@#i', '$1', $url) ?? $url;
    }
}
