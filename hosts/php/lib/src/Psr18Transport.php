<?php

declare(strict_types=1);

namespace ScimProvisioner;

use Psr\Http\Client\ClientExceptionInterface;
use Psr\Http\Client\ClientInterface;
use Psr\Http\Client\NetworkExceptionInterface;
use Psr\Http\Message\RequestFactoryInterface;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\StreamFactoryInterface;
use ScimProvisioner\Internal\BodyCap;
use ScimProvisioner\Internal\CurlErrors;

/**
 * {@see Transport} over any PSR-18 client and PSR-17 factories: Drupal's `http_client`
 * (Guzzle 7), Joomla's HTTP factory, Symfony's Psr18Client. It keeps what
 * {@see CurlTransport} promises:
 *
 * - **one origin:** only the scheme, host and port of `base_url`; anything else is
 *   `denied` before the client sees it;
 * - **no redirects followed:** a 3xx is returned as data. PSR-18 clients do not follow
 *   redirects (the PSR leaves that to a wrapper), and Guzzle's `sendRequest()` turns
 *   `allow_redirects` off; for a Guzzle client this class calls `send()` with
 *   `allow_redirects => false` itself, whatever the client's defaults. Do not pass a client
 *   wrapped in a redirect-following plugin (HTTPlug's RedirectPlugin);
 * - **the request's timeout:** with Guzzle as `timeout` and `connect_timeout` on each
 *   request. PSR-18 has no timeout, so with another client an answer that comes later than
 *   the request's timeout is refused as `timeout` (configure the client's own timeout no
 *   longer than the connector's, so it also stops waiting);
 * - **the body cap** (32 MiB by default): a larger `Content-Length` is refused before the
 *   body is read, and no more than cap + 1 bytes are ever read; with Guzzle the body is
 *   written into a capped sink, so the transfer stops at the cap;
 * - **no secret in logs or errors:** method, URL (without user info), status and time are
 *   logged; a client's error text has the request's credentials removed.
 *
 * Errors: a Guzzle failure is classified by curl's error number, as CurlTransport does;
 * another client's `NetworkExceptionInterface` is `cannot-connect` (or `timeout` past the
 * deadline), any other `ClientExceptionInterface` is `other`.
 *
 * Options: `user_agent` (default `scim-provisioner-php/0.1`, set when the request has
 * none), `max_body_bytes`, `token_url` (an OAuth 2.0 token endpoint, whose origin is allowed
 * beside base_url's).
 */
final class Psr18Transport implements Transport
{
    public const MAX_BODY_BYTES = CurlTransport::MAX_BODY_BYTES;
    private const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];

    /** @var list<array{0: string, 1: string, 2: int}> scheme, host, port: base_url's, then token_url's */
    private readonly array $origins;
    private readonly int $maxBodyBytes;
    private readonly Logger $logger;

    /**
     * @param string $baseUrl the SCIM base URL; its origin is the only one requests may go to
     * @param array{user_agent?: string, max_body_bytes?: int, token_url?: string} $options
     * @param Logger|\Psr\Log\LoggerInterface|null $logger method, URL, status and time only
     */
    public function __construct(
        string $baseUrl,
        private readonly ClientInterface $client,
        private readonly RequestFactoryInterface $requestFactory,
        private readonly StreamFactoryInterface $streamFactory,
        private readonly array $options = [],
        Logger|\Psr\Log\LoggerInterface|null $logger = null,
    ) {
        $origins = CurlTransport::allowedOrigins($baseUrl, $options['token_url'] ?? null);
        $max = $options['max_body_bytes'] ?? self::MAX_BODY_BYTES;
        if (!is_int($max) || $max < 1) {
            throw new InvalidArgumentException('max_body_bytes must be a positive integer');
        }
        $this->origins = $origins;
        $this->maxBodyBytes = $max;
        $this->logger = PsrLoggerAdapter::wrap($logger);
    }

    public function send(HttpRequest $request): HttpResponse
    {
        $origin = CurlTransport::originOf($request->url);
        if ($origin === null) {
            throw new TransportException(
                'invalid-url',
                'only absolute http and https URLs are allowed: ' . self::safeUrl($request->url),
            );
        }
        if (!in_array($origin, $this->origins, true)) {
            throw new TransportException(
                'denied',
                "{$origin[0]}://{$origin[1]}:{$origin[2]} is not the configured SCIM origin",
            );
        }
        $psrRequest = $this->psrRequest($request);
        $what = $request->method . ' ' . self::safeUrl($request->url);
        $timeoutMs = max(1, $request->timeoutMs);
        $started = hrtime(true);
        $cap = null;
        try {
            if ($this->client instanceof \GuzzleHttp\ClientInterface) {
                $cap = new BodyCap($this->maxBodyBytes);
                $response = $this->client->send($psrRequest, [
                    'allow_redirects' => false,
                    'http_errors' => false,
                    'timeout' => $timeoutMs / 1000,
                    'connect_timeout' => $timeoutMs / 1000,
                    'sink' => $cap->guzzleSink(),
                ]);
            } else {
                $response = $this->client->sendRequest($psrRequest);
            }
        } catch (ClientExceptionInterface $e) {
            $ms = self::elapsedMs($started);
            if ($cap !== null && $cap->overflow) {
                $this->logger->warning("{$what}: response body larger than {$this->maxBodyBytes} bytes; dropped");
                throw new TransportException('other', "the response body is larger than {$this->maxBodyBytes} bytes");
            }
            [$case, $detail] = $this->classify($e, $ms >= $timeoutMs, $request);
            $this->logger->info("{$what}: {$case} after {$ms} ms ({$detail})");
            throw new TransportException($case, $case === 'timeout' ? '' : $detail);
        } catch (\RuntimeException $e) {
            // Not a PSR-18 failure (a factory or stream refusing): still only an error value.
            $detail = $this->scrubbed($e->getMessage(), $request);
            $this->logger->info("{$what}: other ({$detail})");
            throw new TransportException('other', $detail);
        }
        $ms = self::elapsedMs($started);
        if ($ms > $timeoutMs) {
            $this->logger->info("{$what}: timeout after {$ms} ms (the answer came too late)");
            throw new TransportException('timeout');
        }
        $body = $cap !== null && $cap->overflow ? null : $this->readBody($response);
        if ($body === null) {
            $this->logger->warning("{$what}: response body larger than {$this->maxBodyBytes} bytes; dropped");
            throw new TransportException('other', "the response body is larger than {$this->maxBodyBytes} bytes");
        }
        $headers = [];
        foreach ($response->getHeaders() as $name => $values) {
            foreach ($values as $value) {
                $headers[] = [(string) $name, (string) $value];
            }
        }
        $this->logger->debug("{$what} -> {$response->getStatusCode()} ({$ms} ms)");
        return new HttpResponse($response->getStatusCode(), $headers, $body);
    }

    /** The PSR-7 request for the guest's request, with nothing added but a User-Agent. */
    private function psrRequest(HttpRequest $request): \Psr\Http\Message\RequestInterface
    {
        try {
            $psr = $this->requestFactory->createRequest($request->method, $request->url);
            $hasAgent = false;
            foreach ($request->headers as [$name, $value]) {
                if (preg_match('/[\r\n]/', $name . $value)) {
                    throw new TransportException('other', "header {$name} holds a line break");
                }
                $hasAgent = $hasAgent || strcasecmp($name, 'user-agent') === 0;
                $psr = $psr->withAddedHeader($name, $value);
            }
            if (!$hasAgent) {
                $psr = $psr->withHeader('User-Agent', $this->options['user_agent'] ?? 'scim-provisioner-php/0.1');
            }
            if ($request->body !== null) {
                $psr = $psr->withBody($this->streamFactory->createStream($request->body));
            }
            return $psr;
        } catch (\InvalidArgumentException $e) {
            // PSR-7 implementations refuse malformed names and values; the text names no value.
            throw new TransportException(
                'other',
                'the request could not be built: ' . $this->scrubbed($e->getMessage(), $request),
            );
        }
    }

    /** The body, or null when it is larger than the cap (never reads more than cap + 1 bytes). */
    private function readBody(ResponseInterface $response): ?string
    {
        $length = $response->getHeaderLine('Content-Length');
        if ($length !== '' && ctype_digit($length) && (strlen($length) > 18 || (int) $length > $this->maxBodyBytes)) {
            return null;
        }
        $stream = $response->getBody();
        if ($stream->isSeekable()) {
            $stream->rewind();
        }
        $body = '';
        while (!$stream->eof()) {
            $chunk = $stream->read(min(1 << 20, $this->maxBodyBytes + 1 - strlen($body)));
            if ($chunk === '') {
                break;
            }
            $body .= $chunk;
            if (strlen($body) > $this->maxBodyBytes) {
                $stream->close();
                return null;
            }
        }
        return $body;
    }

    /**
     * The WIT case and a safe detail for a client's exception.
     *
     * @return array{0: string, 1: string}
     */
    private function classify(ClientExceptionInterface $e, bool $pastDeadline, HttpRequest $request): array
    {
        $context = method_exists($e, 'getHandlerContext') ? (array) $e->getHandlerContext() : [];
        if (isset($context['errno']) && is_int($context['errno']) && $context['errno'] !== 0) {
            $curlError = $context['error'] ?? null;
            $detail = is_string($curlError) && $curlError !== '' ? $curlError : $e->getMessage();
            return [CurlErrors::caseOf($context['errno']), $this->scrubbed($detail, $request)];
        }
        $detail = $this->scrubbed($e->getMessage(), $request);
        if ($pastDeadline) {
            return ['timeout', $detail];
        }
        return [$e instanceof NetworkExceptionInterface ? 'cannot-connect' : 'other', $detail];
    }

    /** A client's error text without the request's credentials or the URL's user info. */
    private function scrubbed(string $text, HttpRequest $request): string
    {
        foreach ($request->headers as [$name, $value]) {
            if (in_array(strtolower($name), self::SECRET_HEADERS, true) && strlen($value) >= 4) {
                $text = str_replace($value, '<redacted>', $text);
                $parts = explode(' ', $value, 2);
                if (isset($parts[1]) && strlen($parts[1]) >= 4) {
                    $text = str_replace($parts[1], '<redacted>', $text);
                }
            }
        }
        return preg_replace('#([a-z][a-z0-9+.-]*://)[^/@\s]*@#i', '$1', $text) ?? $text;
    }

    private static function safeUrl(string $url): string
    {
        return preg_replace('#^([a-z][a-z0-9+.-]*://)[^/@]*@#i', '$1', $url) ?? $url;
    }

    private static function elapsedMs(int $startedNs): int
    {
        return intdiv(hrtime(true) - $startedNs, 1_000_000);
    }
}
