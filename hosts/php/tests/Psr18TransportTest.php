<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use GuzzleHttp\Client as GuzzleClient;
use GuzzleHttp\Psr7\HttpFactory;
use Nyholm\Psr7\Factory\Psr17Factory;
use PHPUnit\Framework\TestCase;
use ScimProvisioner\Action;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\Psr18Transport;
use ScimProvisioner\ScimProvisionerException;
use ScimProvisioner\TransportErrorCase;
use ScimProvisioner\TransportException;
use ScimProvisioner\Tests\Support\CollectingPsrLogger;
use ScimProvisioner\Tests\Support\Peers;
use ScimProvisioner\Tests\Support\Psr18OnlyClient;
use ScimProvisioner\Tests\Support\RecordingTransport;
use ScimSamples\PhpServer;

/**
 * Psr18Transport with Debian's Guzzle 7 (php-guzzlehttp-guzzle): against a real HTTP server
 * (php -S with tests/fixtures/http-fixture.php) for CurlTransport's promises, once with the
 * Guzzle client itself and once through a client that is only PSR-18; then the whole client
 * scenario against scim2-server, every result read back over plain HTTP.
 */
final class Psr18TransportTest extends TestCase
{
    private static ?PhpServer $fixture = null;
    private static string $base = '';

    public static function setUpBeforeClass(): void
    {
        self::$fixture = new PhpServer(__DIR__ . '/fixtures/http-fixture.php', [], Peers::tempDir('psr18-fixture') . '/server.log', '');
        self::$base = 'http://127.0.0.1:' . self::$fixture->port;
    }

    public static function tearDownAfterClass(): void
    {
        self::$fixture?->stop();
        self::$fixture = null;
    }

    /** @return array<string, array{string}> */
    public static function clients(): array
    {
        return ['Guzzle client' => ['guzzle'], 'a client that is only PSR-18' => ['psr18-only']];
    }

    /**
     * @param array{user_agent?: string, max_body_bytes?: int} $options
     */
    private static function transport(string $kind, string $baseUrl, array $options = [], ?CollectingPsrLogger $logger = null): Psr18Transport
    {
        if ($kind === 'guzzle') {
            $factory = new HttpFactory();
            return new Psr18Transport($baseUrl, new GuzzleClient(), $factory, $factory, $options, $logger);
        }
        $factory = new Psr17Factory();
        return new Psr18Transport($baseUrl, new Psr18OnlyClient(new GuzzleClient()), $factory, $factory, $options, $logger);
    }

    /** @param list<array{0: string, 1: string}> $headers */
    private static function request(string $method, string $path, array $headers = [], ?string $body = null, int $timeoutMs = 10000): HttpRequest
    {
        return new HttpRequest($method, self::$base . $path, $headers, $body, $timeoutMs);
    }

    private function failure(Psr18Transport $t, HttpRequest $r): TransportException
    {
        try {
            $t->send($r);
        } catch (TransportException $e) {
            $this->assertInstanceOf(ScimProvisionerException::class, $e);
            return $e;
        }
        $this->fail("{$r->method} {$r->url} should have failed");
    }

    /** @dataProvider clients */
    public function testSendsExactlyWhatTheGuestAsksAndFollowsNoRedirect(string $kind): void
    {
        $log = new CollectingPsrLogger();
        $t = self::transport($kind, self::$base . '/scim/v2', [], $log);
        $secret = 'Bearer s3cr3t-' . bin2hex(random_bytes(6));
        $r = $t->send(self::request('POST', '/echo', [['Authorization', $secret], ['Content-Type', 'application/scim+json']], '{"a":1}'));
        $this->assertSame(200, $r->status);
        $echo = json_decode($r->body, true);
        $this->assertSame('POST', $echo['method']);
        $this->assertSame('{"a":1}', $echo['body']);
        $this->assertSame('application/scim+json', $echo['headers']['Content-Type']);
        $this->assertSame($secret, $echo['headers']['Authorization']);
        $this->assertSame('scim-provisioner-php/0.1', $echo['headers']['User-Agent']);
        $multi = array_values(array_filter($r->headers, static fn (array $h): bool => strcasecmp($h[0], 'X-Multi') === 0));
        $this->assertSame([['X-Multi', 'one'], ['X-Multi', 'two']], $multi, 'repeated headers keep their order');

        $r = $t->send(self::request('PATCH', '/echo', [], '{"b":2}'));
        $echo = json_decode($r->body, true);
        $this->assertSame(['PATCH', '{"b":2}'], [$echo['method'], $echo['body']]);
        $this->assertArrayNotHasKey('Content-Type', $echo['headers'], 'no content type the guest did not ask for');
        $this->assertSame('DELETE', json_decode($t->send(self::request('DELETE', '/echo'))->body, true)['method']);

        $this->assertSame(404, $t->send(self::request('GET', '/missing'))->status, 'a 404 is data, not an exception');
        $r = $t->send(self::request('GET', '/redirect', [['Authorization', $secret]]));
        $this->assertSame(302, $r->status, 'the redirect is returned, not followed');
        $this->assertSame('/echo', $r->body === 'moved' ? self::header($r->headers, 'Location') : null);

        $text = $log->text();
        $this->assertStringContainsString('POST ' . self::$base . '/echo -> 200', $text);
        $this->assertStringContainsString('GET ' . self::$base . '/redirect -> 302', $text);
        $this->assertStringNotContainsString('s3cr3t', $text);
    }

    /** @dataProvider clients */
    public function testOnlyTheConfiguredOriginAndHttpUrls(string $kind): void
    {
        $t = self::transport($kind, self::$base . '/scim/v2');
        $port = self::$fixture->port;
        $e = $this->failure($t, new HttpRequest('GET', "http://127.0.0.2:{$port}/echo", [], null, 1000));
        $this->assertSame(TransportErrorCase::Denied, $e->errorCase());
        $e = $this->failure($t, new HttpRequest('GET', "https://127.0.0.1:{$port}/echo", [], null, 1000));
        $this->assertSame('denied', $e->case, 'another scheme is another origin');
        $e = $this->failure($t, new HttpRequest('GET', 'ftp://127.0.0.1/x', [], null, 1000));
        $this->assertSame('invalid-url', $e->case);
        $e = $this->failure($t, new HttpRequest('GET', 'http://user:pw@127.0.0.2/x', [], null, 1000));
        $this->assertStringNotContainsString('pw', $e->getMessage());
        $e = $this->failure($t, self::request('GET', '/echo', [['X-Bad', "a\r\nInjected: 1"]]));
        $this->assertSame('other', $e->case, 'a header with a line break is refused');
    }

    /** @dataProvider clients */
    public function testBodiesAreCappedAndFailuresClassified(string $kind): void
    {
        $mib = 1 << 20;
        $t = self::transport($kind, self::$base, ['max_body_bytes' => 2 * $mib]);
        $this->assertSame(2 * $mib, strlen($t->send(self::request('GET', '/big?bytes=' . (2 * $mib)))->body), 'the cap itself is allowed');
        foreach (['/big?bytes=' . (3 * $mib), '/big?length=1&bytes=' . (3 * $mib)] as $path) {
            $e = $this->failure($t, self::request('GET', $path));
            $this->assertSame('other', $e->case, $path);
            $this->assertStringContainsString('larger than 2097152 bytes', $e->getMessage());
        }
        if ($kind === 'guzzle') {
            // The default cap is CurlTransport's, 32 MiB.
            $e = $this->failure(self::transport($kind, self::$base), self::request('GET', '/big?bytes=' . (33 * $mib)));
            $this->assertStringContainsString('larger than 33554432 bytes', $e->getMessage());
        }

        $closed = 'http://127.0.0.1:' . PhpServer::freePort();
        $e = $this->failure(self::transport($kind, $closed), new HttpRequest('GET', "{$closed}/x", [], null, 2000));
        $this->assertSame('cannot-connect', $e->case);

        if ($kind === 'guzzle') {
            // TLS against a plain HTTP server: the handshake fails (curl's error number says so).
            $tls = 'https://127.0.0.1:' . self::$fixture->port;
            $e = $this->failure(self::transport($kind, $tls), new HttpRequest('GET', "{$tls}/echo", [], null, 2000));
            $this->assertSame('tls', $e->case);
        }

        // The request's own timeout: Guzzle stops waiting; another client's late answer is refused.
        $e = $this->failure($t, self::request('GET', '/slow?ms=1500', [], null, 200));
        $this->assertSame('timeout', $e->case);
        $this->assertSame(['tag' => 'timeout'], $e->toWit());
        $this->assertSame(200, $t->send(self::request('GET', '/echo'))->status, 'the transport is fine afterwards');
    }

    /**
     * The whole scenario through Guzzle against scim2-server, with a PSR-3 logger: create,
     * change (a PATCH), deactivate, delete, each read back over plain HTTP.
     */
    public function testTheWholeScenarioAgainstScim2Server(): void
    {
        $peer = Peers::get('scim2-server');
        $log = new CollectingPsrLogger();
        $factory = new HttpFactory();
        $recorder = new RecordingTransport(new Psr18Transport($peer->baseUrl, new GuzzleClient(), $factory, $factory, [], $log));
        $connector = Connector::open(Peers::runtime(), [
            'base_url' => $peer->baseUrl,
            'token' => $peer->token,
            'timeout' => 10000,
            'policy' => ['operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true], 'deprovision' => 'delete'],
        ], $recorder, $log);
        $name = 'grace-' . bin2hex(random_bytes(4));
        $id = (string) random_int(100000, 999999);
        $user = static fn (string $last, bool $active = true): CmsUser => new CmsUser($id, [
            'name' => $name, 'mail' => "{$name}@drupal.example", 'field_first_name' => 'Grace', 'field_last_name' => $last, 'roles' => ['member'],
        ], $active);

        $this->assertTrue($connector->testConnection()->discovered);
        $created = $connector->provision($user('Hopper'), 'created');
        $this->assertSame(Action::Created, $created->action);
        $remoteId = rawurlencode($created->link->remoteId);
        [$status, $remote] = $peer->json('GET', "/Users/{$remoteId}");
        $this->assertSame(200, $status);
        $this->assertSame([$name, 'Hopper', $id], [$remote['userName'], $remote['name']['familyName'], $remote['externalId']]);
        $recorder->take();

        $updated = $connector->provision($user('Murray'), 'updated', $created->link);
        $this->assertSame(Action::Updated, $updated->action);
        $this->assertContains('PATCH', $recorder->take(), 'the change is a PATCH');
        [, $remote] = $peer->json('GET', "/Users/{$remoteId}");
        $this->assertSame(['Murray', 'Grace'], [$remote['name']['familyName'], $remote['name']['givenName']]);

        $blocked = $connector->provision($user('Murray', false), 'blocked', $updated->link);
        $this->assertSame(Action::Deactivated, $blocked->action);
        [, $remote] = $peer->json('GET', "/Users/{$remoteId}");
        $this->assertFalse($remote['active']);

        $deleted = $connector->provision($user('Murray', false), 'deleted', $blocked->link);
        $this->assertSame(Action::Deleted, $deleted->action);
        [$status] = $peer->json('GET', "/Users/{$remoteId}");
        $this->assertSame(404, $status);

        $text = $log->text();
        $this->assertStringContainsString("POST {$peer->baseUrl}/Users -> 201", $text, 'the transport logged through the PSR-3 logger');
        $this->assertStringNotContainsString($peer->token, $text, 'the token never reaches the PSR-3 logger');
    }

    /** @param list<array{0: string, 1: string}> $headers */
    private static function header(array $headers, string $name): ?string
    {
        foreach ($headers as [$n, $v]) {
            if (strcasecmp($n, $name) === 0) {
                return $v;
            }
        }
        return null;
    }
}
