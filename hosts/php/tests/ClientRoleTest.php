<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Action;
use ScimProvisioner\BatchItem;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Concurrent;
use ScimProvisioner\Connector;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\PlannedAction;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\ProvisionOutcome;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\Tests\Support\Peer;
use ScimProvisioner\Tests\Support\Peers;
use ScimProvisioner\Tests\Support\RecordingTransport;

/**
 * The client role through the bridge, against real SCIM servers (scim2-server and the
 * SCIMMY app). Every result is read back from the server with plain HTTP.
 */
final class ClientRoleTest extends TestCase
{
    private const POLICY = [
        'operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true],
        'deprovision' => 'delete',
    ];

    /** @return array<string, array{string}> */
    public static function peers(): array
    {
        return ['scim2-server' => ['scim2-server'], 'scimmy' => ['scimmy']];
    }

    /** @param array<string, mixed> $extra */
    private static function connector(Peer $peer, ?RecordingTransport &$recorder = null, array $extra = []): Connector
    {
        $recorder = new RecordingTransport(new CurlTransport($peer->baseUrl));
        return Connector::open(Peers::runtime(), ['base_url' => $peer->baseUrl, 'token' => $peer->token, 'timeout' => 10000, 'policy' => self::POLICY] + $extra, $recorder);
    }

    private static function user(string $id, string $name, string $first, string $last, bool $active = true): CmsUser
    {
        return new CmsUser($id, [
            'name' => $name,
            'mail' => "{$name}@drupal.example",
            'field_first_name' => $first,
            'field_last_name' => $last,
            'roles' => ['member'],
        ], $active);
    }

    private static function unique(string $prefix): string
    {
        return $prefix . '-' . bin2hex(random_bytes(4));
    }

    /**
     * @dataProvider peers
     */
    public function testCreateUpdateDeactivateReactivateDelete(string $peerName): void
    {
        $peer = Peers::get($peerName);
        $c = self::connector($peer, $rec);
        $name = self::unique('ada');
        $id = (string) random_int(100000, 999999);

        $created = $c->provision(self::user($id, $name, 'Ada', 'Lovelace'), 'created', null);
        $this->assertSame(Action::Created, $created->action);
        $this->assertNotNull($created->link);
        $this->assertNotNull($created->link->snapshot, 'a snapshot to diff the next update against');
        [$status, $remote] = $peer->json('GET', '/Users/' . rawurlencode($created->link->remoteId));
        $this->assertSame(200, $status);
        $this->assertSame($name, $remote['userName']);
        $this->assertTrue($remote['active'] ?? true);
        $this->assertSame('Lovelace', $remote['name']['familyName']);
        $this->assertSame($id, $remote['externalId']);
        $rec->take();

        // Nothing changed: nothing is sent.
        $same = $c->provision(self::user($id, $name, 'Ada', 'Lovelace'), 'updated', $created->link);
        $this->assertSame(Action::Unchanged, $same->action);
        $this->assertSame(0, $same->requests);
        $this->assertSame([], $rec->take());

        // A change: a minimal PATCH from the snapshot.
        $updated = $c->provision(self::user($id, $name, 'Ada', 'King'), 'updated', $same->link ?? $created->link);
        $this->assertSame(Action::Updated, $updated->action);
        $methods = $rec->take();
        $this->assertContains('PATCH', $methods, 'the update is a PATCH');
        $this->assertNotContains('PUT', $methods);
        [, $remote] = $peer->json('GET', '/Users/' . rawurlencode($created->link->remoteId));
        $this->assertSame('King', $remote['name']['familyName']);
        $this->assertSame('Ada', $remote['name']['givenName'], 'untouched attributes stay');

        $blocked = $c->provision(self::user($id, $name, 'Ada', 'King', false), 'blocked', $updated->link);
        $this->assertSame(Action::Deactivated, $blocked->action);
        [, $remote] = $peer->json('GET', '/Users/' . rawurlencode($created->link->remoteId));
        $this->assertFalse($remote['active']);

        $plan = $c->plan(self::user($id, $name, 'Ada', 'King'), 'unblocked', true);
        $this->assertSame(PlannedAction::Reactivate, $plan->action);
        $unblocked = $c->provision(self::user($id, $name, 'Ada', 'King'), 'unblocked', $blocked->link);
        $this->assertSame(Action::Updated, $unblocked->action);
        [, $remote] = $peer->json('GET', '/Users/' . rawurlencode($created->link->remoteId));
        $this->assertTrue($remote['active']);

        $deleted = $c->provision(self::user($id, $name, 'Ada', 'King'), 'deleted', $unblocked->link);
        $this->assertSame(Action::Deleted, $deleted->action);
        $this->assertNull($deleted->link);
        [$status] = $peer->json('GET', '/Users/' . rawurlencode($created->link->remoteId));
        $this->assertSame(404, $status);
        $this->assertNull($c->getUser($created->link->remoteId), 'getUser: none on 404');
    }

    /**
     * @dataProvider peers
     */
    public function testAdoptsAUserTheServerAlreadyHolds(string $peerName): void
    {
        $peer = Peers::get($peerName);
        $name = self::unique('grace');
        [$status, $existing] = $peer->json('POST', '/Users', [
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'],
            'userName' => $name,
            'name' => ['givenName' => 'Grace', 'familyName' => 'Old'],
            'emails' => [['type' => 'work', 'value' => "{$name}@drupal.example", 'primary' => true]],
            'active' => true,
        ]);
        $this->assertSame(201, $status, json_encode($existing));
        $c = self::connector($peer);
        $outcome = $c->provision(self::user('4242', $name, 'Grace', 'Hopper'), 'created', null);
        $this->assertSame(Action::Adopted, $outcome->action);
        $this->assertSame($existing['id'], $outcome->link?->remoteId);
        [, $list] = $peer->json('GET', '/Users?filter=' . rawurlencode('userName eq "' . $name . '"'));
        $this->assertSame(1, $list['totalResults'], 'no duplicate was created');
        $this->assertSame('Hopper', $list['Resources'][0]['name']['familyName'], 'the adopted user was brought in line');
    }

    /**
     * @dataProvider peers
     */
    public function testConnectionReadOneMapAndBatch(string $peerName): void
    {
        $peer = Peers::get($peerName);
        $c = self::connector($peer);
        $caps = $c->testConnection();
        $this->assertTrue($caps->discovered);
        $this->assertTrue($caps->patch);

        $mapped = $c->mapUser(self::user('7', 'mapped', 'Map', 'Ped'));
        $this->assertSame('mapped', $mapped['userName']);
        $this->assertSame('Ped', $mapped['name']['familyName']);

        $items = [];
        $names = [];
        for ($i = 0; $i < 6; $i++) {
            $names[] = $n = self::unique("batch{$i}");
            $items[] = new BatchItem(self::user((string) (5000 + $i), $n, 'B', "User{$i}"), 'created');
        }
        $outcome = $c->provisionBatch($items);
        $this->assertCount(6, $outcome->results);
        foreach ($outcome->results as $i => $r) {
            $this->assertInstanceOf(ProvisionOutcome::class, $r, $r instanceof \Throwable ? $r->getMessage() : '');
            $this->assertSame(Action::Created, $r->action);
            $remote = $c->getUser($r->link->remoteId);
            $this->assertSame($names[$i], $remote['userName']);
            [$status] = $peer->json('GET', '/Users/' . rawurlencode($r->link->remoteId));
            $this->assertSame(200, $status);
        }
        $this->assertGreaterThan(0, $outcome->requests);

        $listing = $c->indexRemoteUsers();
        $this->assertGreaterThanOrEqual(6, $listing->users);
        $document = $c->exportRemoteIndex();
        $this->assertNotNull($document);
        $other = self::connector($peer);
        $this->assertSame([], $other->remoteUserIds());
        $this->assertSame($listing->users, $other->importRemoteIndex($document));
        $ids = $c->remoteUserIds();
        $this->assertCount($listing->users, $ids);
        $this->assertContains($outcome->results[0]->link->remoteId, $ids);
        $this->assertSame($ids, $other->remoteUserIds());
    }

    /**
     * Several connectors' calls in flight at once, their requests carried by curl_multi.
     */
    public function testConcurrentConnectorsThroughCurlMulti(): void
    {
        $peer = Peers::get('scim2-server');
        $connectors = [self::connector($peer), self::connector($peer), self::connector($peer)];
        $jobs = [];
        $expected = [];
        foreach ($connectors as $k => $c) {
            $items = [];
            for ($i = 0; $i < 4; $i++) {
                $expected[$k][] = $n = self::unique("multi{$k}x{$i}");
                $items[] = new BatchItem(self::user((string) (8000 + 10 * $k + $i), $n, 'M', 'Ulti'), 'created');
            }
            $jobs[] = [$c, $items];
        }
        $results = Concurrent::provisionBatches($jobs);
        $this->assertCount(3, $results);
        foreach ($results as $k => $batch) {
            $this->assertInstanceOf(\ScimProvisioner\BatchOutcome::class, $batch, $batch instanceof \Throwable ? $batch->getMessage() : '');
            foreach ($batch->results as $i => $r) {
                $this->assertInstanceOf(ProvisionOutcome::class, $r);
                [, $list] = $peer->json('GET', '/Users?filter=' . rawurlencode('userName eq "' . $expected[$k][$i] . '"'));
                $this->assertSame(1, $list['totalResults']);
                $this->assertSame($r->link->remoteId, $list['Resources'][0]['id']);
            }
        }
        $single = Concurrent::provisions([[$connectors[0], self::user('8999', self::unique('solo'), 'S', 'Olo'), 'created', null]]);
        $this->assertInstanceOf(ProvisionOutcome::class, $single[0]);
        $this->assertSame(Action::Created, $single[0]->action);
    }

    /**
     * A wrong token is a 401 with a clear message; no secret reaches logs, errors or dumps.
     */
    public function testSecretsStayOutOfLogsErrorsAndDumps(): void
    {
        $peer = Peers::get('scim2-server');
        $log = fopen('php://memory', 'w+b');
        $good = Connector::open(Peers::runtime(), ['base_url' => $peer->baseUrl, 'token' => $peer->token, 'policy' => self::POLICY], null, new StreamLogger($log, 'debug'));
        $good->provision(self::user('31337', self::unique('secret'), 'Se', 'Cret'), 'created', null);
        $dump = print_r($good, true) . var_export($good->__debugInfo(), true);
        $this->assertStringNotContainsString($peer->token, $dump);

        $wrong = 'wrong-' . bin2hex(random_bytes(8));
        $bad = Connector::open(Peers::runtime(), ['base_url' => $peer->baseUrl, 'token' => $wrong], null, new StreamLogger($log, 'debug'));
        try {
            $bad->testConnection();
            $this->fail('a wrong token must fail');
        } catch (ProvisioningException $e) {
            $this->assertContains($e->case, ['scim', 'unexpected-response']);
            $this->assertSame(401, $e->status);
            $this->assertStringContainsString('401', $e->getMessage());
            $this->assertStringNotContainsString($wrong, $e->getMessage());
        }
        rewind($log);
        $text = (string) stream_get_contents($log);
        $this->assertNotSame('', $text, 'the debug log saw the requests');
        $this->assertStringNotContainsString($peer->token, $text);
        $this->assertStringNotContainsString($wrong, $text);
    }

    public function testInvalidConfigurationIsRefusedClearly(): void
    {
        $rt = Peers::runtime();
        try {
            Connector::open($rt, ['base_url' => 'https://x.example/scim/v2', 'token' => 't0ken', 'policy' => ['operations' => ['create' => 'yes please']]]);
            $this->fail('a bad policy must be refused');
        } catch (ProvisioningException $e) {
            $this->assertSame('invalid-config', $e->case);
            $this->assertStringStartsWith('invalid configuration:', $e->getMessage());
            $this->assertSame('permanent', $e->retry);
        }
        try {
            Connector::open($rt, ['base_url' => 'https://x.example', 'tokn' => 'x']);
            $this->fail('an unknown key must be refused');
        } catch (ProvisioningException $e) {
            $this->assertSame('invalid-config', $e->case);
            $this->assertStringContainsString("unknown setting 'tokn'", $e->getMessage());
        }
        try {
            Connector::open($rt, ['base_url' => 'not a url', 'token' => 'x']);
            $this->fail('a bad base URL must be refused');
        } catch (ProvisioningException $e) {
            $this->assertSame('invalid-config', $e->case);
        }
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('unknown user event');
        Connector::open($rt, ['base_url' => 'https://x.example/v2', 'token' => 'x'])->plan(self::user('1', 'a', 'b', 'c'), 'exploded', false);
    }

    public function testBadInputGetsAClearErrorAndTheConnectorStaysOpen(): void
    {
        $c = Connector::open(Peers::runtime(), ['base_url' => 'https://x.example/scim/v2', 'token' => 'x']);
        try {
            // mapUser passes every field (plan passes only what the scope reads: none here).
            $c->mapUser(new CmsUser('1', ['name' => "bad\xff"]));
            $this->fail('invalid UTF-8 must be refused');
        } catch (\InvalidArgumentException $e) {
            $this->assertStringContainsString('strings must be valid UTF-8', $e->getMessage());
        }
        $this->assertSame(PlannedAction::Create, $c->plan(self::user('1', 'good', 'G', 'Ood'), 'created', false)->action);
        $this->assertSame(1, $c->instancesOpened(), 'nothing was lost: the same instance serves on');
    }
}
