<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimSamples\PhpServer;

/**
 * The real OAuth 2.0 authorization server of tests/peers/oidc (oidc-provider 9): a static
 * client_credentials client, an introspecting resource-server client, opaque tokens in
 * memory. Started on a free loopback port, ready once it prints its endpoints, killed by
 * {@see stop()} (or when the object goes away).
 */
final class OidcProvider
{
    public const CLIENT_ID = 'scim-provisioner';
    public const CLIENT_SECRET = 'php-client-secret-4b1d';
    public const INTROSPECTOR = 'scim-resource-server:php-introspector-8e2a';

    /** @var resource|null */
    private $process;
    public readonly string $issuer;
    public readonly string $tokenEndpoint;
    public readonly string $introspectionEndpoint;

    public function __construct(int $tokenTtlSeconds = 600)
    {
        $app = dirname(__DIR__, 4) . '/tests/peers/oidc';
        if (!is_dir("{$app}/node_modules/oidc-provider")) {
            throw new \LogicException("{$app}/node_modules is missing: run scripts/install-peers");
        }
        $env = PhpServer::baseEnv() + [
            'OIDC_PEER_INTROSPECTOR' => self::INTROSPECTOR,
            'OIDC_PEER_CLIENT' => self::CLIENT_ID . ':' . self::CLIENT_SECRET,
        ];
        $log = Peers::logDir() . '/oidc-' . getmypid() . '.log';
        $this->process = proc_open(
            [getenv('NODE') ?: 'node', 'server.js', '--access-token-ttl', (string) $tokenTtlSeconds],
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $log, 'a']],
            $pipes,
            $app,
            $env,
        );
        if (!is_resource($this->process)) {
            throw new \RuntimeException('cannot start oidc-provider');
        }
        // One JSON line with its endpoints, once it listens; fgets returns false if it dies.
        $line = fgets($pipes[1]);
        $endpoints = is_string($line) ? json_decode($line, true) : null;
        if (!is_array($endpoints) || !isset($endpoints['issuer'])) {
            $this->stop();
            throw new \RuntimeException("oidc-provider did not start; log:\n" . PhpServer::tail($log));
        }
        $this->issuer = (string) $endpoints['issuer'];
        $this->tokenEndpoint = (string) $endpoints['token_endpoint'];
        $this->introspectionEndpoint = (string) $endpoints['introspection_endpoint'];
    }

    /** The quirky SCIM server, accepting only tokens this provider calls active. */
    public function scimServer(): Peer
    {
        return new Peer('quirky', [
            '--introspect-url', $this->introspectionEndpoint, '--introspect-client', self::INTROSPECTOR,
        ]);
    }

    /** A token of the static client, for the test's own reads. */
    public function token(): string
    {
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic "
                . base64_encode(self::CLIENT_ID . ':' . self::CLIENT_SECRET),
            'content' => 'grant_type=client_credentials&scope=scim',
            'ignore_errors' => true,
            'proxy' => '',
        ]]);
        $answer = json_decode((string) @file_get_contents($this->tokenEndpoint, false, $context), true);
        if (!is_array($answer) || !is_string($answer['access_token'] ?? null)) {
            throw new \RuntimeException('the provider issued no token');
        }
        return $answer['access_token'];
    }

    /** @return array<string, mixed> tokens issued per client, the token endpoint's errors per code */
    public function stats(): array
    {
        [, $text] = PhpServer::get("{$this->issuer}/test/stats", null);
        return (array) json_decode($text, true);
    }

    public function stop(): void
    {
        if (is_resource($this->process)) {
            proc_terminate($this->process, SIGKILL);
            proc_close($this->process);
        }
        $this->process = null;
    }

    public function __destruct()
    {
        $this->stop();
    }
}
