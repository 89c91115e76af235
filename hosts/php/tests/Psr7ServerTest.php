<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use GuzzleHttp\Psr7\HttpFactory;
use Nyholm\Psr7\Factory\Psr17Factory;
use PHPUnit\Framework\TestCase;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestFactoryInterface;
use Psr\Http\Message\StreamFactoryInterface;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\ScimServer;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * The server role over PSR-7: ScimServer::handleServerRequest() with nyholm/psr7 and
 * guzzlehttp/psr7 (Debian's php-nyholm-psr7, php-guzzlehttp-psr7), in this process and
 * behind a small front controller (tests/fixtures/psr7-front-controller.php under php -S)
 * that scim2-tester checks.
 */
final class Psr7ServerTest extends TestCase
{
    /** @return array<string, array{string}> */
    public static function implementations(): array
    {
        return ['nyholm/psr7' => ['nyholm'], 'guzzlehttp/psr7' => ['guzzle']];
    }

    private static function factory(string $impl): ServerRequestFactoryInterface&StreamFactoryInterface
    {
        return $impl === 'guzzle' ? new HttpFactory() : new Psr17Factory();
    }

    /** @dataProvider implementations */
    public function testAnswersPsr7RequestsWithTheCallersResponses(string $impl): void
    {
        $factory = self::factory($impl);
        $dir = Peers::tempDir("psr7-{$impl}");
        $token = bin2hex(random_bytes(16));
        $runtime = Peers::runtime();
        $directory = PdoSqliteDirectory::open("{$dir}/site.db", $runtime);
        $server = ScimServer::open($runtime, [
            'base_url' => 'https://cms.example/api/scim/v2',
            'token' => $token,
            'bulk_max_payload' => 4096,
        ], $directory);
        $send = static function (string $method, string $target, ?string $body = null, ?string $auth = null) use ($factory, $server, $token): ResponseInterface {
            $request = $factory->createServerRequest($method, "https://cms.example{$target}")
                ->withHeader('Authorization', 'Bearer ' . ($auth ?? $token))
                ->withHeader('Accept', 'application/scim+json');
            if ($body !== null) {
                $request = $request->withHeader('Content-Type', 'application/scim+json')->withBody($factory->createStream($body));
            }
            return $server->handleServerRequest($request, $factory);
        };
        $responseClass = $impl === 'guzzle' ? \GuzzleHttp\Psr7\Response::class : \Nyholm\Psr7\Response::class;

        $user = ['schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'], 'userName' => 'psr.seven', 'name' => ['givenName' => 'Pat', 'familyName' => 'Sr']];
        $created = $send('POST', '/api/scim/v2/Users', (string) json_encode($user));
        $this->assertInstanceOf($responseClass, $created, 'built with the factory the caller passed');
        $body = (string) $created->getBody();
        $this->assertSame(201, $created->getStatusCode(), $body);
        $this->assertSame((string) strlen($body), $created->getHeaderLine('Content-Length'));
        $this->assertStringContainsString('application/scim+json', $created->getHeaderLine('Content-Type'));
        $id = json_decode($body, true)['id'];
        $this->assertSame("https://cms.example/api/scim/v2/Users/{$id}", $created->getHeaderLine('Location'));
        $this->assertNotSame('', $created->getHeaderLine('ETag'));

        $read = $send('GET', "/api/scim/v2/Users/{$id}");
        $this->assertSame(200, $read->getStatusCode());
        $this->assertSame('psr.seven', json_decode((string) $read->getBody(), true)['userName']);
        $list = $send('GET', '/api/scim/v2/Users?filter=' . rawurlencode('userName eq "psr.seven"'));
        $this->assertSame(1, json_decode((string) $list->getBody(), true)['totalResults'], 'the query string reaches the filter');
        $row = $directory->pdo()->query("SELECT name FROM users WHERE id = " . $directory->pdo()->quote($id))->fetchColumn();
        $this->assertSame('psr.seven', $row, 'a CMS user was kept beside the SCIM user');

        $this->assertSame(401, $send('GET', '/api/scim/v2/Users', null, 'wrong')->getStatusCode());
        $outside = $send('GET', '/elsewhere/Users');
        $this->assertSame(404, $outside->getStatusCode(), 'outside the base path');
        $this->assertSame('404', json_decode((string) $outside->getBody(), true)['status']);
        $tooBig = $send('POST', '/api/scim/v2/Users', str_repeat(' ', 5000) . (string) json_encode($user));
        $this->assertSame(413, $tooBig->getStatusCode(), 'a body past bulk_max_payload');
        $this->assertSame(204, $send('DELETE', "/api/scim/v2/Users/{$id}")->getStatusCode());
        $this->assertSame(404, $send('GET', "/api/scim/v2/Users/{$id}")->getStatusCode());
    }

    /** @dataProvider implementations */
    public function testScim2TesterPassesAgainstAPsr7FrontController(string $impl): void
    {
        $dir = Peers::tempDir("psr7-front-{$impl}");
        $token = bin2hex(random_bytes(16));
        $env = ['PSR7_IMPL' => $impl, 'SCIM_TOKEN' => $token, 'FRONT_CONTROLLER_DB' => "{$dir}/site.db"];
        $server = new PhpServer(__DIR__ . '/fixtures/psr7-front-controller.php', $env, "{$dir}/server.log", '/scim/v2', 60.0, ['ffi.enable' => '1']);
        try {
            [$status, , $headers] = PhpServer::get("{$server->baseUrl}/ServiceProviderConfig", $token);
            $this->assertSame(200, $status);
            $class = $impl === 'guzzle' ? 'GuzzleHttp\Psr7\Response' : 'Nyholm\Psr7\Response';
            $this->assertContains("X-Psr7-Response: {$class}", $headers);

            $scim2 = dirname(__DIR__, 3) . '/target/peers/venv/bin/scim2';
            $this->assertFileExists($scim2, 'run scripts/install-peers');
            $process = proc_open(
                [$scim2, '--url', $server->baseUrl, 'test'],
                [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]],
                $pipes,
                null,
                array_merge(PhpServer::baseEnv(), ['SCIM_CLI_HEADERS' => "Authorization: Bearer {$token}"]),
            );
            $out = (string) stream_get_contents($pipes[1]);
            fclose($pipes[1]);
            $exit = proc_close($process);
        } finally {
            $server->stop();
        }
        $lines = explode("\n", $out);
        $successes = count(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'SUCCESS')));
        $failures = array_values(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'ERROR') || str_starts_with($l, 'FAIL') || str_starts_with($l, 'CRITICAL')));
        $this->assertSame(0, $exit, "scim2 test failed:\n{$out}\nserver log:\n" . PhpServer::tail($server->logFile));
        $this->assertSame([], $failures, $out);
        $this->assertGreaterThanOrEqual(100, $successes, "only {$successes} checks ran:\n{$out}");
        fwrite(STDERR, "\nscim2-tester ({$impl}): {$successes} checks passed against the PSR-7 front controller\n");
    }
}
