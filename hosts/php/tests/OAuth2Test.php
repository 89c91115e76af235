<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Action;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\TransportException;
use ScimProvisioner\Tests\Support\OidcProvider;
use ScimProvisioner\Tests\Support\Peers;

/**
 * OAuth 2.0 client credentials (issue 31) through the bridge: a real authorization server
 * (oidc-provider) and the quirky SCIM server accepting only the tokens its introspection
 * endpoint calls active. The connector's default transport allows the token URL's origin.
 */
final class OAuth2Test extends TestCase
{
    private static ?OidcProvider $idp = null;

    public static function tearDownAfterClass(): void
    {
        self::$idp?->stop();
        self::$idp = null;
    }

    private static function idp(): OidcProvider
    {
        return self::$idp ??= new OidcProvider();
    }

    /** @param array<string, mixed> $extra */
    private static function config(string $baseUrl, string $secret, array $extra = []): array
    {
        return [
            'base_url' => $baseUrl,
            'auth' => 'oauth2',
            'token_url' => self::idp()->tokenEndpoint,
            'client_id' => OidcProvider::CLIENT_ID,
            'client_secret' => $secret,
            'scope' => 'scim',
            'timeout' => 10000,
        ] + $extra;
    }

    public function testASyncWithClientCredentialsThenAWrongSecret(): void
    {
        $peer = self::idp()->scimServer();
        try {
            $log = fopen('php://memory', 'w+b');
            $connector = Connector::open(
                Peers::runtime(),
                self::config($peer->baseUrl, OidcProvider::CLIENT_SECRET, ['client_auth' => 'client_secret_post']),
                null,
                new StreamLogger($log, 'debug'),
            );
            $connector->testConnection();
            $name = 'oauth-' . bin2hex(random_bytes(4));
            $user = new CmsUser('7', ['name' => $name, 'mail' => "{$name}@drupal.example"], true);
            $this->assertSame(Action::Created, $connector->provision($user, 'created', null)->action);
            [$status, $text] = \ScimSamples\PhpServer::get(
                $peer->baseUrl . '/Users?filter=' . rawurlencode("userName eq \"{$name}\""),
                self::idp()->token(),
            );
            $this->assertSame(200, $status, $text);
            $this->assertSame(1, json_decode($text, true)['totalResults'] ?? null, $text);

            $wrong = 'wrong-' . bin2hex(random_bytes(8));
            $bad = Connector::open(
                Peers::runtime(),
                self::config($peer->baseUrl, $wrong),
                null,
                new StreamLogger($log, 'debug'),
            );
            try {
                $bad->testConnection();
                $this->fail('a wrong secret must fail');
            } catch (ProvisioningException $e) {
                $this->assertSame('scim', $e->case);
                $this->assertSame('invalid_client', $e->scimType);
                $this->assertStringContainsString('the client secret or id is wrong', $e->getMessage());
                $this->assertStringContainsString('authorization server refused a token', $e->getMessage());
                $this->assertStringNotContainsString($wrong, $e->getMessage());
            }
            rewind($log);
            $text = (string) stream_get_contents($log);
            $this->assertStringContainsString('OAuth 2.0 token', $text);
            $dump = print_r($connector, true) . print_r($bad, true);
            foreach ([OidcProvider::CLIENT_SECRET, $wrong] as $secret) {
                $this->assertStringNotContainsString($secret, $text);
                $this->assertStringNotContainsString($secret, $dump);
            }
            $this->assertGreaterThanOrEqual(1, self::idp()->stats()['errors']['invalid_client'] ?? 0);
        } finally {
            $peer->stop();
        }
    }

    public function testTheTransportAllowsTheTokenOriginAndNoOther(): void
    {
        $transport = new CurlTransport('http://127.0.0.1:1/v2', ['token_url' => 'http://127.0.0.1:2/token']);
        foreach (['http://127.0.0.1:3/token', 'https://127.0.0.1:2/token'] as $url) {
            try {
                $transport->send(new HttpRequest('POST', $url, [], '', 1000));
                $this->fail("{$url} must be denied");
            } catch (TransportException $e) {
                $this->assertSame('denied', $e->case);
            }
        }
        // The token endpoint's origin is allowed: nothing listens there, so it cannot connect.
        try {
            $transport->send(new HttpRequest('POST', 'http://127.0.0.1:2/token', [], '', 1000));
            $this->fail('nothing listens on port 2');
        } catch (TransportException $e) {
            $this->assertSame('cannot-connect', $e->case);
        }
    }

    public function testOAuth2SettingsAreCheckedClearly(): void
    {
        $base = ['base_url' => 'https://scim.example/v2'];
        foreach ([
            [['auth' => 'oauth2', 'client_id' => 'a', 'client_secret' => 'b'], 'token_url'],
            [['auth' => 'oauth2', 'token_url' => 'https://i/t', 'client_secret' => 'b'], 'client_id'],
            [['auth' => 'oauth2', 'token_url' => 'https://i/t', 'client_id' => 'a'], 'client_secret'],
            [['auth' => 'oauth2', 'token_url' => 'https://i/t', 'client_id' => 'a', 'client_secret' => 'b',
                'token' => 't'], 'not token'],
            [['token_url' => 'https://i/t'], "set 'auth' => 'oauth2'"],
            [['auth' => 'kerberos'], "auth is 'oauth2'"],
            [['auth' => 'oauth2', 'token_url' => 'https://i/t', 'client_id' => 'a', 'client_secret' => 'b',
                'client_auth' => 'private_key_jwt'], 'private_key_jwt'],
        ] as [$config, $needle]) {
            try {
                Connector::open(Peers::runtime(), $base + $config);
                $this->fail('refused: ' . json_encode($config));
            } catch (ProvisioningException $e) {
                $this->assertSame('invalid-config', $e->case, $e->getMessage());
                $this->assertStringContainsString($needle, $e->getMessage());
            }
        }
    }
}
