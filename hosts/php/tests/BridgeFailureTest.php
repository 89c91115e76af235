<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Action;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\DeadlineExceededException;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\MemoryLimitException;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\PlannedAction;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Request;
use ScimProvisioner\ScimServer;
use ScimProvisioner\TransportException;
use ScimProvisioner\Tests\Support\FlakyTransport;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * Bridge failures: a guest trap, an import PHP answers with an error, a call past its
 * deadline. Each gives a clear PHP exception and leaves the object usable.
 */
final class BridgeFailureTest extends TestCase
{
    private const MIB = 1024 * 1024;

    private static function user(string $name): CmsUser
    {
        return new CmsUser((string) random_int(1, 1 << 30), ['name' => $name, 'mail' => "{$name}@drupal.example", 'field_first_name' => 'F', 'field_last_name' => 'L']);
    }

    public function testAGuestTrapOnTheMemoryCapGivesAClearExceptionAndTheNextCallWorks(): void
    {
        $runtime = Peers::runtime(['memory_limit_bytes' => 32 * self::MIB]);
        $dir = Peers::tempDir('trap');
        $server = ScimServer::open($runtime, [
            'base_url' => 'http://127.0.0.1/scim/v2',
            'token' => 'T0kenT0ken',
            'bulk_max_payload' => 64 * self::MIB,
        ], PdoSqliteDirectory::open("{$dir}/d.db", $runtime));
        $this->assertSame(1, $server->instancesOpened());
        $headers = [['Authorization', 'Bearer T0kenT0ken'], ['Content-Type', 'application/scim+json']];
        $body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' . str_repeat('a', 48 * self::MIB) . '"}';
        try {
            $server->handle(new Request('POST', '/Users', '', $headers, $body));
            $this->fail('a 48 MiB body in a 32 MiB instance must trap');
        } catch (GuestTrapException $e) {
            $this->assertInstanceOf(MemoryLimitException::class, $e, "kind {$e->kind}: {$e->getMessage()}");
            $this->assertSame('memory', $e->kind);
            $this->assertStringContainsString('trapped in [method]scim-server.handle (memory)', $e->getMessage());
            $this->assertStringContainsString('next call starts on a fresh one', $e->getMessage());
        }
        unset($body);
        // The same object serves the next request, on a fresh instance.
        $answer = $server->handle(new Request('POST', '/Users', '', $headers, (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'], 'userName' => 'after.trap',
        ])));
        $this->assertSame(201, $answer->status, $answer->body);
        $this->assertSame(2, $server->instancesOpened());
        $list = $server->handle(new Request('GET', '/Users', 'filter=' . rawurlencode('userName eq "after.trap"'), $headers));
        $this->assertSame(1, json_decode($list->body, true)['totalResults']);
    }

    public function testATrapWhileTheGuestTakesAHugeHttpAnswerLeavesTheConnectorUsable(): void
    {
        $dir = Peers::tempDir('huge');
        $fixture = new PhpServer(__DIR__ . '/fixtures/http-fixture.php', [], "{$dir}/fixture.log", '');
        $base = "http://127.0.0.1:{$fixture->port}/huge/v2";
        $c = Connector::open(Peers::runtime(['memory_limit_bytes' => 32 * self::MIB]), ['base_url' => $base, 'token' => 'T0kenT0ken']);
        try {
            $c->getUser('1');
            $this->fail('a 30 MiB answer in a 32 MiB instance must trap');
        } catch (GuestTrapException $e) {
            $this->assertSame('memory', $e->kind, $e->getMessage());
            $this->assertStringContainsString('[method]connector.get-user', $e->getMessage());
        } finally {
            $fixture->stop();
        }
        $mapped = $c->mapUser(self::user('after.huge'));
        $this->assertSame('after.huge', $mapped['userName'], 'the next call works');
        $this->assertSame(2, $c->instancesOpened());
    }

    public function testAnImportPhpAnswersWithAnErrorBecomesAClearProvisioningError(): void
    {
        $peer = Peers::get('scim2-server');
        $config = ['base_url' => $peer->baseUrl, 'token' => $peer->token, 'timeout' => 5000];

        // The transport throws: cannot-connect, once.
        $flaky = new FlakyTransport(new CurlTransport($peer->baseUrl), 1, new TransportException('cannot-connect', 'connection refused'));
        $c = Connector::open(Peers::runtime(), $config, $flaky);
        $name = 'flaky-' . bin2hex(random_bytes(3));
        try {
            $c->provision(self::user($name), 'created');
            $this->fail('the transport failure must surface');
        } catch (ProvisioningException $e) {
            $this->assertSame('transport', $e->case);
            $this->assertSame('cannot-connect', $e->transportError);
            $this->assertTrue($e->isRetryable(), 'a refused connection may mend');
            $this->assertStringContainsString('cannot connect to the SCIM server (connection refused)', $e->getMessage());
        }
        $outcome = $c->provision(self::user($name), 'created');
        $this->assertSame(Action::Created, $outcome->action, 'the next call works');
        $this->assertSame(1, $c->instancesOpened(), 'an import error is not a trap');

        // A buggy client that throws something else: the guest gets `other`, PHP gets a clear error.
        $buggy = new FlakyTransport(new CurlTransport($peer->baseUrl), 1, new \LogicException('proxy misconfigured'));
        $c = Connector::open(Peers::runtime(), $config, $buggy);
        try {
            $c->testConnection();
            $this->fail('the transport failure must surface');
        } catch (ProvisioningException $e) {
            $this->assertSame('transport', $e->case);
            $this->assertSame('other', $e->transportError);
            $this->assertStringContainsString('proxy misconfigured', $e->getMessage());
        }
        $this->assertTrue($c->testConnection()->discovered, 'the next call works');

        // The real curl transport refuses another origin (denied) and reports a closed port.
        $c = Connector::open(Peers::runtime(), $config, new CurlTransport('http://127.0.0.1:1/elsewhere'));
        try {
            $c->testConnection();
            $this->fail('another origin must be denied');
        } catch (ProvisioningException $e) {
            $this->assertSame('denied', $e->transportError);
            $this->assertFalse($e->isRetryable());
        }
        $closed = 'http://127.0.0.1:' . PhpServer::freePort() . '/v2';
        $c = Connector::open(Peers::runtime(), ['base_url' => $closed, 'token' => 'x', 'timeout' => 5000]);
        try {
            $c->testConnection();
            $this->fail('a closed port must fail');
        } catch (ProvisioningException $e) {
            $this->assertSame('cannot-connect', $e->transportError);
            $this->assertSame('backoff', $e->retry);
        }
        $this->assertSame(PlannedAction::Create, $c->plan(self::user('p'), 'created', false)->action, 'the connector still works');
    }

    public function testACallPastItsDeadlineGivesAClearExceptionAndTheNextCallWorks(): void
    {
        $peer = Peers::get('scim2-server');
        $config = ['base_url' => $peer->baseUrl, 'token' => $peer->token];
        // The document format of export-remote-index, with the matching attributes a real one names.
        $seed = Connector::open(Peers::runtime(), $config);
        $seed->provision(self::user('seed-' . bin2hex(random_bytes(3))), 'created');
        $seed->indexRemoteUsers();
        $real = json_decode((string) $seed->exportRemoteIndex(), true);
        $this->assertIsArray($real['matching']);
        $rows = [];
        for ($i = 0; $i < 400_000; $i++) {
            $rows[] = ["id-{$i}", "user{$i}", "ext{$i}", "user{$i}@example.com"];
        }
        $big = (string) json_encode(['version' => $real['version'], 'matching' => $real['matching'], 'users' => $rows]);
        unset($rows);

        $runtime = Peers::runtime(['deadline_ms' => 50]);
        $c = Connector::open($runtime, $config);
        $started = hrtime(true);
        try {
            $c->importRemoteIndex($big);
            $this->fail('importing ' . strlen($big) . ' bytes must pass a 50 ms deadline');
        } catch (DeadlineExceededException $e) {
            $this->assertSame('deadline', $e->kind);
            $this->assertStringContainsString('trapped in [method]connector.import-remote-index (deadline)', $e->getMessage());
        }
        $this->assertLessThan(10_000, intdiv(hrtime(true) - $started, 1_000_000), 'the deadline stopped the guest');
        // The same object works on: a fresh instance, re-opened with the stored configuration.
        $this->assertSame(PlannedAction::Create, $c->plan(self::user('after'), 'created', false)->action);
        $this->assertSame(count($real['users']), $c->importRemoteIndex((string) json_encode($real)));
        $this->assertSame(2, $c->instancesOpened());
        $this->assertSame(Action::Created, $c->provision(self::user('deadline-' . bin2hex(random_bytes(3))), 'created')->action);
    }

    public function testAServerRequestPastItsDeadlineGivesAClearExceptionAndTheNextRequestWorks(): void
    {
        $runtime = Peers::runtime(['deadline_ms' => 50]);
        $server = ScimServer::open($runtime, ['base_url' => 'http://127.0.0.1/scim/v2', 'token' => 'T0kenT0ken', 'bulk_max_payload' => 64 * self::MIB],
            PdoSqliteDirectory::open(Peers::tempDir('deadline') . '/d.db', $runtime));
        $clauses = [];
        for ($i = 0; $i < 200_000; $i++) {
            $clauses[] = "userName eq \"u{$i}\"";
        }
        $body = (string) json_encode(['schemas' => ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], 'filter' => implode(' or ', $clauses)]);
        $headers = [['Authorization', 'Bearer T0kenT0ken'], ['Content-Type', 'application/scim+json']];
        try {
            $server->handle(new Request('POST', '/Users/.search', '', $headers, $body));
            $this->fail('a 200,000-clause filter must pass a 50 ms deadline');
        } catch (DeadlineExceededException $e) {
            $this->assertStringContainsString('trapped in [method]scim-server.handle (deadline)', $e->getMessage());
        }
        $answer = $server->handle(new Request('POST', '/Users/.search', '', $headers, (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], 'filter' => 'userName eq "u1" or userName eq "u2"',
        ])));
        $this->assertSame(200, $answer->status, $answer->body);
        $this->assertSame(0, json_decode($answer->body, true)['totalResults']);
        $this->assertSame(2, $server->instancesOpened());
    }
}
