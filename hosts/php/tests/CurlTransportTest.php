<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\TransportException;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/** CurlTransport against a real HTTP server (php -S with tests/fixtures/http-fixture.php). */
final class CurlTransportTest extends TestCase
{
    private static ?PhpServer $fixture = null;
    private static string $base = '';

    public static function setUpBeforeClass(): void
    {
        self::$fixture = new PhpServer(__DIR__ . '/fixtures/http-fixture.php', [], Peers::tempDir('fixture') . '/server.log', '');
        self::$base = 'http://127.0.0.1:' . self::$fixture->port;
    }

    public static function tearDownAfterClass(): void
    {
        self::$fixture?->stop();
        self::$fixture = null;
    }

    /** @param list<array{0: string, 1: string}> $headers */
    private static function request(string $method, string $path, array $headers = [], ?string $body = null, int $timeoutMs = 10000): HttpRequest
    {
        return new HttpRequest($method, self::$base . $path, $headers, $body, $timeoutMs);
    }

    private function failure(CurlTransport $t, HttpRequest $r): TransportException
    {
        try {
            $t->send($r);
        } catch (TransportException $e) {
            return $e;
        }
        $this->fail("{$r->method} {$r->url} should have failed");
    }

    public function testSendsExactlyWhatTheGuestAsksAndReturnsEveryStatus(): void
    {
        $log = fopen('php://memory', 'w+b');
        $t = new CurlTransport(self::$base . '/scim/v2', [], new StreamLogger($log, 'debug'));
        $secret = 'Bearer s3cr3t-' . bin2hex(random_bytes(6));
        $r = $t->send(self::request('POST', '/echo', [['Authorization', $secret], ['Content-Type', 'application/scim+json']], '{"a":1}'));
        $this->assertSame(200, $r->status);
        $echo = json_decode($r->body, true);
        $this->assertSame('POST', $echo['method']);
        $this->assertSame('{"a":1}', $echo['body']);
        $this->assertSame('application/scim+json', $echo['headers']['Content-Type']);
        $this->assertSame($secret, $echo['headers']['Authorization']);
        $this->assertArrayNotHasKey('Expect', $echo['headers']);
        $multi = array_values(array_filter($r->headers, static fn (array $h): bool => strcasecmp($h[0], 'X-Multi') === 0));
        $this->assertSame([['X-Multi', 'one'], ['X-Multi', 'two']], $multi, 'repeated headers keep their order');

        $r = $t->send(self::request('PATCH', '/echo', [], '{"b":2}'));
        $echo = json_decode($r->body, true);
        $this->assertSame('PATCH', $echo['method']);
        $this->assertArrayNotHasKey('Content-Type', $echo['headers'], 'curl adds no form content type');

        $r = $t->send(self::request('DELETE', '/echo'));
        $this->assertSame('DELETE', json_decode($r->body, true)['method']);

        $this->assertSame(404, $t->send(self::request('GET', '/missing'))->status, 'a 404 is data');
        $r = $t->send(self::request('GET', '/redirect'));
        $this->assertSame(302, $r->status, 'redirects are not followed');

        rewind($log);
        $text = (string) stream_get_contents($log);
        $this->assertStringContainsString('POST ' . self::$base . '/echo -> 200', $text);
        $this->assertStringNotContainsString('s3cr3t', $text);
    }

    public function testOnlyTheConfiguredOriginAndHttpUrls(): void
    {
        $t = new CurlTransport(self::$base . '/scim/v2');
        $e = $this->failure($t, new HttpRequest('GET', 'http://127.0.0.2:' . self::$fixture->port . '/echo', [], null, 1000));
        $this->assertSame('denied', $e->case);
        $this->assertSame(['tag' => 'denied', 'val' => $e->detail], $e->toWit());
        $e = $this->failure($t, new HttpRequest('GET', 'https://127.0.0.1:' . self::$fixture->port . '/echo', [], null, 1000));
        $this->assertSame('denied', $e->case, 'another scheme is another origin');
        $e = $this->failure($t, new HttpRequest('GET', 'ftp://127.0.0.1/x', [], null, 1000));
        $this->assertSame('invalid-url', $e->case);
        $e = $this->failure($t, new HttpRequest('GET', 'http://user:pw@127.0.0.2/x', [], null, 1000));
        $this->assertStringNotContainsString('pw', $e->getMessage());
    }

    public function testBodiesAreCappedAndFailuresClassified(): void
    {
        $t = new CurlTransport(self::$base);
        $this->assertSame(1 << 20, strlen($t->send(self::request('GET', '/big?bytes=' . (1 << 20)))->body));
        $e = $this->failure($t, self::request('GET', '/big?bytes=' . (33 << 20)));
        $this->assertSame('other', $e->case);
        $this->assertStringContainsString('larger than 33554432 bytes', $e->getMessage());


        $closed = 'http://127.0.0.1:' . PhpServer::freePort();
        $e = $this->failure(new CurlTransport($closed), new HttpRequest('GET', "{$closed}/x", [], null, 2000));
        $this->assertSame('cannot-connect', $e->case);

        // TLS against a plain HTTP server: the handshake fails as soon as the server answers.
        // The timeout is generous because a loaded machine can take seconds to answer, and a
        // timeout here would be classified 'timeout', not 'tls'.
        $tls = 'https://127.0.0.1:' . self::$fixture->port;
        $e = $this->failure(new CurlTransport($tls), new HttpRequest('GET', "{$tls}/echo", [], null, 30000));
        $this->assertSame('tls', $e->case);
        $e = $this->failure($t, self::request('GET', '/slow?ms=1500', [], null, 200));
        $this->assertSame('timeout', $e->case);
        $this->assertSame(['tag' => 'timeout'], $e->toWit());
        // The transport is still fine afterwards.
        $this->assertSame(200, $t->send(self::request('GET', '/echo'))->status);
    }
}
