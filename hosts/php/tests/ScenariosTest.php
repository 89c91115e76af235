<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\BatchItem;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Link;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\ProvisionOutcome;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Request;
use ScimProvisioner\Response;
use ScimProvisioner\Runtime;
use ScimProvisioner\ScimServer;
use ScimProvisioner\Tests\Support\Peer;
use ScimProvisioner\Tests\Support\Peers;

/**
 * The shared scenario suite (tests/scenarios/*.json, format in tests/scenarios/README.md) under
 * the PHP host: every scenario against a fresh scim2-server (and a plain HTTP server answering
 * HTML beside it, ${HTML_URL}), server-role steps against this host's own ScimServer over a fresh
 * PdoSqliteDirectory. Prints `scenarios: php: N passed, M failed`.
 */
final class ScenariosTest extends TestCase
{
    private const HOST = 'php';
    /** Steps this host cannot run: "scenario#step" => reason. Printed, never silent. */
    private const SKIPS = [];

    /** @var array<string, bool> */
    private static array $results = [];

    private ?Runtime $runtime = null;
    /** @var array<string, Connector> */
    private array $connectors = [];
    /** @var array<string, ScimServer> */
    private array $servers = [];
    /** @var array{vars: array<string, string>, links: array<string, mixed>} */
    private array $ctx = ['vars' => [], 'links' => []];
    private Peer $peer;
    private Peer $html;
    private string $tmp = '';

    public static function tearDownAfterClass(): void
    {
        $passed = count(array_filter(self::$results));
        fwrite(STDOUT, sprintf("\nscenarios: %s: %d passed, %d failed\n", self::HOST, $passed, count(self::$results) - $passed));
    }

    /** @return iterable<string, array{0: string}> */
    public static function scenarios(): iterable
    {
        $files = glob(dirname(__DIR__, 3) . '/tests/scenarios/*.json') ?: [];
        sort($files);
        foreach ($files as $file) {
            yield basename($file, '.json') => [$file];
        }
    }

    /** @dataProvider scenarios */
    public function testScenario(string $file): void
    {
        $scenario = json_decode((string) file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
        $name = (string) $scenario['name'];
        self::$results[$name] = false;
        // A scenario may name another peer: our quirky server with its switches.
        $switches = $scenario['peer']['quirky'] ?? null;
        $this->peer = is_array($switches) ? new Peer('quirky', array_values(array_map('strval', $switches))) : new Peer('scim2-server');
        try {
            $this->html = new Peer('http.server');
        } catch (\Throwable $e) {
            $this->peer->stop();
            throw $e;
        }
        $this->tmp = Peers::tempDir("scenario-{$name}");
        $this->ctx = ['vars' => ['BASE_URL' => $this->peer->baseUrl, 'TOKEN' => $this->peer->token, 'DEAD_URL' => self::deadUrl(), 'HTML_URL' => $this->html->baseUrl], 'links' => []];
        $failures = [];
        try {
            foreach ($scenario['steps'] as $i => $step) {
                $reason = self::SKIPS["{$name}#{$i}"] ?? null;
                if ($reason !== null) {
                    fwrite(STDOUT, "scenario {$name} step {$i}: skip on " . self::HOST . " because {$reason}\n");
                    continue;
                }
                $this->assertArrayHasKey('expect', $step, "step {$i} has no expectation");
                $got = $this->step($step);
                $errs = self::match($this->expand($step['expect']), $got, '$');
                if ($errs !== []) {
                    $failures[] = "step {$i} ({$step['op']}): " . implode('; ', $errs);
                    break;
                }
            }
        } finally {
            $this->connectors = [];
            $this->servers = [];
            $this->runtime = null;
            $this->peer->stop();
            $this->html->stop();
        }
        self::$results[$name] = $failures === [];
        $this->assertSame([], $failures);
    }

    // ---- the format's shared machinery (same rules in every runner) ----

    private function expand(mixed $value): mixed
    {
        if (is_string($value)) {
            foreach ($this->ctx['vars'] as $k => $v) {
                $value = str_replace('${' . $k . '}', $v, $value);
            }
            return $value;
        }
        if (!is_array($value)) {
            return $value;
        }
        if (array_key_exists('$repeat', $value)) {
            $item = $this->expand($value['$repeat']);
            return is_string($item) ? str_repeat($item, (int) $value['times']) : array_fill(0, (int) $value['times'], $item);
        }
        if (array_key_exists('$link', $value)) {
            return $this->ctx['links'][$value['$link']];
        }
        if (array_key_exists('$remoteId', $value)) {
            return $this->ctx['links'][$value['$remoteId']]['remoteId'];
        }
        if (array_key_exists('$json', $value)) {
            return self::encode($this->expand($value['$json']));
        }
        $out = [];
        foreach ($value as $k => $v) {
            $out[$k] = $this->expand($v);
        }
        return $out;
    }

    private static function encode(mixed $value): string
    {
        return json_encode($value, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
    }

    private static function short(mixed $v): string
    {
        $s = json_encode($v, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) ?: var_export($v, true);
        return mb_strlen($s) > 200 ? mb_substr($s, 0, 200) . '…' : $s;
    }

    private static function typeName(mixed $v): string
    {
        return match (true) {
            $v === null => 'null',
            is_bool($v) => 'boolean',
            is_int($v), is_float($v) => 'number',
            is_string($v) => 'string',
            is_array($v) && array_is_list($v) => 'array',
            default => 'object',
        };
    }

    /** @return list<string> */
    private static function match(mixed $expected, mixed $actual, string $path): array
    {
        if (is_array($expected) && !array_is_list($expected) && array_filter(array_keys($expected), static fn ($k) => str_starts_with((string) $k, '$')) !== []) {
            $errs = [];
            foreach ($expected as $k => $want) {
                switch ($k) {
                    case '$type':
                        // An empty PHP array is both an empty list and an empty object.
                        $type = self::typeName($actual);
                        if ($type !== $want && !($actual === [] && in_array($want, ['array', 'object'], true))) {
                            $errs[] = "{$path}: expected a {$want}, got " . self::short($actual);
                        }
                        break;
                    case '$gte':
                        if (!(is_int($actual) || is_float($actual)) || $actual < $want) {
                            $errs[] = "{$path}: expected >= {$want}, got " . self::short($actual);
                        }
                        break;
                    case '$contains':
                        if (!is_string($actual) || !str_contains($actual, (string) $want)) {
                            $errs[] = "{$path}: expected a string containing " . self::short($want) . ', got ' . self::short($actual);
                        }
                        break;
                    case '$len':
                        $len = is_string($actual) ? mb_strlen($actual, 'UTF-8') : (is_array($actual) ? count($actual) : null);
                        if ($len !== $want) {
                            $errs[] = "{$path}: expected length {$want}, got " . var_export($len, true);
                        }
                        break;
                    case '$not':
                        if (self::match($want, $actual, $path) === []) {
                            $errs[] = "{$path}: expected not " . self::short($want) . ', got ' . self::short($actual);
                        }
                        break;
                    default:
                        $errs[] = "{$path}: unknown matcher {$k}";
                }
            }
            return $errs;
        }
        if (is_array($expected) && array_is_list($expected) && $expected !== []) {
            if (!is_array($actual) || !array_is_list($actual) || count($actual) !== count($expected)) {
                return ["{$path}: expected " . count($expected) . ' items, got ' . self::short($actual)];
            }
            $errs = [];
            foreach ($expected as $i => $e) {
                array_push($errs, ...self::match($e, $actual[$i], "{$path}[{$i}]"));
            }
            return $errs;
        }
        if (is_array($expected)) {
            if (!is_array($actual)) {
                return ["{$path}: expected an object, got " . self::short($actual)];
            }
            $errs = [];
            foreach ($expected as $k => $v) {
                array_push($errs, ...self::match($v, $actual[$k] ?? null, "{$path}.{$k}"));
            }
            return $errs;
        }
        if ((is_int($expected) || is_float($expected)) && (is_int($actual) || is_float($actual))) {
            return (float) $expected === (float) $actual ? [] : ["{$path}: expected {$expected}, got {$actual}"];
        }
        return $expected === $actual ? [] : ["{$path}: expected " . self::short($expected) . ', got ' . self::short($actual)];
    }

    // ---- this host's adapter: host values -> the canonical JSON of the README ----

    /** @return array<string, mixed>|null */
    private static function cLink(?Link $l): ?array
    {
        return $l === null ? null : ['remoteId' => $l->remoteId, 'version' => $l->version, 'snapshot' => $l->snapshot];
    }

    /** @return array<string, mixed> */
    private static function cOutcome(ProvisionOutcome $o): array
    {
        return ['action' => $o->action->value, 'reason' => $o->reason, 'link' => self::cLink($o->link), 'location' => $o->location, 'requests' => $o->requests];
    }

    /** @return array<string, mixed> */
    private static function cError(ProvisioningException $e): array
    {
        $wit = $e->toWit();
        return [
            'case' => $e->case,
            'status' => $e->status,
            'scimType' => $e->scimType,
            'detail' => in_array($e->case, ['scim', 'unexpected-response'], true) ? $e->detail : null,
            'message' => in_array($e->case, ['invalid-config', 'other'], true) ? (is_string($wit['val'] ?? null) ? $wit['val'] : $e->getMessage()) : null,
            'retry' => $e->retry,
            'retryAfterSeconds' => $e->retryAfterSeconds,
            'transportError' => $e->transportError,
            'userId' => $e->userId,
            'attribute' => $e->attribute,
        ];
    }

    /** @return array<string, mixed> */
    private static function cResponse(Response $r): array
    {
        $headers = [];
        foreach ($r->headers as [$k, $v]) {
            $headers[strtolower($k)] = $v;
        }
        $json = $r->body === '' ? null : json_decode($r->body, true);
        return ['status' => $r->status, 'headers' => $headers, 'json' => $json, 'bodyLength' => strlen($r->body)];
    }

    /** @param array<string, mixed> $u */
    private static function toUser(array $u): CmsUser
    {
        return new CmsUser((string) $u['id'], (array) ($u['fields'] ?? []), (bool) ($u['active'] ?? true));
    }

    private static function toLink(mixed $v): ?Link
    {
        return is_array($v) ? new Link((string) $v['remoteId'], $v['version'] ?? null, $v['snapshot'] ?? null) : null;
    }

    private static function deadUrl(): string
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        return 'http://' . $name . '/v2';
    }

    private function rt(): Runtime
    {
        return $this->runtime ?? Peers::runtime();
    }

    /**
     * @param array<string, mixed> $step
     * @return array<string, mixed>
     */
    private function step(array $step): array
    {
        $s = [];
        foreach ($step as $k => $v) {
            if ($k !== 'expect') {
                $s[$k] = $this->expand($v);
            }
        }
        $c = $this->connectors[$s['connector'] ?? 'main'] ?? null;
        try {
            switch ($s['op']) {
                case 'runtime':
                    $this->runtime = new Runtime(['memory_limit_bytes' => (int) $s['memory_limit_bytes']]);
                    return ['ok' => true];
                case 'open':
                    $this->connectors[$s['as'] ?? 'main'] = Connector::open($this->rt(), $s['config']);
                    return ['ok' => true];
                case 'test-connection':
                    $caps = $c->testConnection();
                    return ['ok' => [
                        'discovered' => $caps->discovered, 'patch' => $caps->patch,
                        'bulk' => $caps->bulk === null ? null : ['maxOperations' => $caps->bulk->maxOperations, 'maxPayloadSize' => $caps->bulk->maxPayloadSize],
                        'filterMaxResults' => $caps->filterMaxResults, 'etag' => $caps->etag, 'sort' => $caps->sort, 'changePassword' => $caps->changePassword,
                    ]];
                case 'provision':
                    $out = self::cOutcome($c->provision(self::toUser($s['user']), $s['event'], self::toLink($s['link'] ?? null)));
                    if (isset($s['save']) && $out['link'] !== null) {
                        $this->ctx['links'][$s['save']] = $out['link'];
                    }
                    return ['ok' => $out];
                case 'plan':
                    $p = $c->plan(self::toUser($s['user']), $s['event'], (bool) $s['linked']);
                    return ['ok' => ['action' => $p->action->value, 'reason' => $p->reason]];
                case 'batch':
                    $b = $c->provisionBatch(array_map(static fn (array $i) => new BatchItem(self::toUser($i['user']), $i['event'], self::toLink($i['link'] ?? null)), $s['items']));
                    $results = [];
                    foreach ($b->results as $n => $r) {
                        $results[] = $r instanceof ProvisioningException ? ['error' => self::cError($r)] : ['ok' => self::cOutcome($r)];
                        $save = $s['items'][$n]['save'] ?? null;
                        if ($save !== null && isset($results[$n]['ok']['link'])) {
                            $this->ctx['links'][$save] = $results[$n]['ok']['link'];
                        }
                    }
                    return ['ok' => ['results' => $results, 'requests' => $b->requests, 'bulkRequests' => $b->bulkRequests]];
                case 'map-user':
                    return ['ok' => $c->mapUser(self::toUser($s['user']))];
                case 'get-user':
                    return ['ok' => $c->getUser($s['remoteId'])];
                case 'index-remote-users':
                    $l = $c->indexRemoteUsers();
                    return ['ok' => ['users' => $l->users, 'requests' => $l->requests]];
                case 'scope-fields':
                    return ['ok' => $c->scopeFields()];
                case 'remote-user-ids':
                    return ['ok' => $c->remoteUserIds()];
                case 'export-remote-index':
                    $doc = $c->exportRemoteIndex();
                    if (isset($s['save'])) {
                        $this->ctx['vars'][$s['save']] = $doc ?? '';
                    }
                    return ['ok' => $doc];
                case 'import-remote-index':
                    return ['ok' => $c->importRemoteIndex($s['document'])];
                case 'export-dialect':
                    $doc = $c->exportDialect();
                    if (isset($s['save'])) {
                        $this->ctx['vars'][$s['save']] = $doc;
                    }
                    return ['ok' => json_decode($doc, true)];
                case 'import-dialect':
                    $c->importDialect($s['document']);
                    return ['ok' => null];
                case 'server-open':
                    $name = $s['as'] ?? 'main';
                    $directory = PdoSqliteDirectory::open("{$this->tmp}/dir-{$name}-" . count($this->servers) . '.db', $this->rt());
                    $this->servers[$name] = ScimServer::open($this->rt(), $s['config'], $directory);
                    return ['ok' => true];
                case 'serve':
                    $r = $s['request'];
                    $body = $r['body'] ?? '';
                    if (!is_string($body)) {
                        $body = self::encode($body);
                    }
                    $resp = $this->servers[$s['server'] ?? 'main']->handle(new Request($r['method'], $r['path'], $r['query'] ?? '', $r['headers'] ?? [], $body));
                    $out = self::cResponse($resp);
                    if (isset($s['saveId']) && is_array($out['json'])) {
                        $this->ctx['vars'][$s['saveId']] = (string) ($out['json']['id'] ?? '');
                    }
                    return ['ok' => $out];
                case 'server-get':
                case 'server-post':
                case 'server-delete':
                    return $this->peerHttp($s);
            }
        } catch (ProvisioningException $e) {
            return ['error' => self::cError($e)];
        } catch (GuestTrapException $e) {
            return ['trap' => ['kind' => $e->kind]];
        }
        throw new \LogicException("unknown op {$s['op']}");
    }

    /**
     * @param array<string, mixed> $s
     * @return array<string, mixed>
     */
    private function peerHttp(array $s): array
    {
        if ($s['op'] === 'server-get') {
            $path = ($s['path'] ?? '/Users') . (isset($s['filter']) ? '?filter=' . rawurlencode($s['filter']) : '');
            [$status, $json] = $this->peer->json('GET', $path);
        } elseif ($s['op'] === 'server-post') {
            [$status, $json] = $this->peer->json('POST', $s['path'], $s['body']);
        } else {
            [$status, $json] = $this->peer->json('DELETE', '/Users/' . rawurlencode($this->ctx['links'][$s['user']]['remoteId']));
        }
        $json = is_array($json) ? $json : [];
        return ['status' => $status, 'count' => $json['totalResults'] ?? null, 'resources' => $json['Resources'] ?? [], 'json' => $json];
    }
}
