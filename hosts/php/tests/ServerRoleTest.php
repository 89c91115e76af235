<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * The server role served by PHP: the Joomla-like site (php -S + router.php + SQLite),
 * checked by third-party conformance suites and read back with plain HTTP.
 */
final class ServerRoleTest extends TestCase
{
    /** @return array{0: PhpServer, 1: string, 2: string} server, token, database */
    private static function joomla(string $name): array
    {
        $dir = Peers::tempDir($name);
        $token = bin2hex(random_bytes(16));
        $server = PhpServer::joomla($dir, ['SCIM_TOKEN' => $token, 'JOOMLA_SITE_DB' => "{$dir}/joomla.db"]);
        return [$server, $token, "{$dir}/joomla.db"];
    }

    private static function tool(string $name): string
    {
        $path = dirname(__DIR__, 3) . "/target/peers/venv/bin/{$name}";
        if (!is_file($path)) {
            throw new \LogicException("{$path} is missing: run scripts/install-peers");
        }
        return $path;
    }

    /**
     * @param list<string> $command
     * @param array<string, string> $env
     * @return array{0: int, 1: string}
     */
    private static function exec(array $command, array $env = []): array
    {
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, null, array_merge(PhpServer::baseEnv(), $env));
        $out = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return [proc_close($process), $out];
    }

    public function testScim2TesterPassesEveryCheck(): void
    {
        [$server, $token] = self::joomla('scim2-tester');
        [$status, $out] = self::exec([self::tool('scim2'), '--url', $server->baseUrl, 'test'], ['SCIM_CLI_HEADERS' => "Authorization: Bearer {$token}"]);
        $server->stop();
        $lines = explode("\n", $out);
        $successes = count(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'SUCCESS')));
        $failures = array_values(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'ERROR') || str_starts_with($l, 'FAIL') || str_starts_with($l, 'CRITICAL')));
        $this->assertSame(0, $status, "scim2 test failed:\n{$out}\nserver log:\n" . PhpServer::tail($server->logFile));
        $this->assertSame([], $failures, $out);
        $this->assertGreaterThanOrEqual(100, $successes, "only {$successes} checks ran:\n{$out}");
        fwrite(STDERR, "\nscim2-tester: {$successes} checks passed against the PHP-served site\n");
    }

    public function testScimSanityPasses(): void
    {
        [$server, $token] = self::joomla('scim-sanity');
        [$status, $out] = self::exec([self::tool('scim-sanity'), 'probe', $server->baseUrl, '--token', $token, '--i-accept-side-effects']);
        $server->stop();
        $this->assertSame(0, $status, "scim-sanity failed:\n{$out}\nserver log:\n" . PhpServer::tail($server->logFile));
        $this->assertStringNotContainsString('[FAIL]', $out);
        $this->assertStringContainsString('All tests passed', $out);
    }

    public function testWithoutTheTokenOnlyDiscoveryIsServed(): void
    {
        [$server] = self::joomla('auth');
        [$status, $body, $headers] = PhpServer::get("{$server->baseUrl}/Users", 'wrong');
        $this->assertSame(401, $status);
        $this->assertSame('401', json_decode($body, true)['status']);
        $this->assertNotEmpty(array_filter($headers, static fn (string $h): bool => stripos($h, 'WWW-Authenticate:') === 0));
        [$status] = PhpServer::get("{$server->baseUrl}/ServiceProviderConfig", null);
        $this->assertSame(200, $status, 'discovery answers without authentication');
        [$status] = PhpServer::get("http://127.0.0.1:{$server->port}/elsewhere", null);
        $this->assertSame(404, $status);
    }

    /** An identity provider's user becomes a normal CMS user; active=false blocks it; DELETE removes it. */
    public function testIdentityProviderUsersAppearInTheCms(): void
    {
        [$server, $token, $db] = self::joomla('into-cms');
        $user = [
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'],
            'userName' => 'okta.user',
            'name' => ['givenName' => 'Olga', 'familyName' => 'Kta'],
            'emails' => [['type' => 'work', 'value' => 'olga@idp.example', 'primary' => true]],
            'active' => true,
        ];
        [$status, $body] = PhpServer::request('POST', "{$server->baseUrl}/Users", $token, (string) json_encode($user));
        $this->assertSame(201, $status, $body);
        $created = json_decode($body, true);
        $id = $created['id'];
        $this->assertSame("{$server->baseUrl}/Users/{$id}", $created['meta']['location']);

        $pdo = new \PDO("sqlite:{$db}");
        $cms = static function () use ($pdo, $id): ?array {
            $stmt = $pdo->prepare('SELECT name, mail, fields, active FROM users WHERE id = ?');
            $stmt->execute([$id]);
            $row = $stmt->fetch(\PDO::FETCH_ASSOC);
            return $row === false ? null : $row;
        };
        $row = $cms();
        $this->assertNotNull($row, 'a CMS user was kept beside the SCIM user');
        $this->assertSame('okta.user', $row['name']);
        $this->assertSame('olga@idp.example', $row['mail']);
        $fields = json_decode($row['fields'], true);
        $this->assertSame('Olga', $fields['field_first_name']);
        $this->assertSame('Kta', $fields['field_last_name']);
        $this->assertSame(1, (int) $row['active']);

        // Okta deactivates with a no-path PATCH.
        $patch = ['schemas' => ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], 'Operations' => [['op' => 'replace', 'value' => ['active' => false]]]];
        [$status, $body] = PhpServer::request('PATCH', "{$server->baseUrl}/Users/{$id}", $token, (string) json_encode($patch));
        $this->assertSame(200, $status, $body);
        $this->assertSame(0, (int) $cms()['active'], 'blocked in the CMS');

        // The site's home page lists its users over HTTP, to a client holding the SCIM token.
        [$status, $body] = PhpServer::get("http://127.0.0.1:{$server->port}/", $token);
        $this->assertSame(200, $status);
        $this->assertSame('okta.user', json_decode($body, true)['users'][0]['name']);

        [$status] = PhpServer::request('DELETE', "{$server->baseUrl}/Users/{$id}", $token);
        $this->assertSame(204, $status);
        $this->assertNull($cms(), 'removed from the CMS');
        [$status] = PhpServer::get("{$server->baseUrl}/Users/{$id}", $token);
        $this->assertSame(404, $status);
    }
}
