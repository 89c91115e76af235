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

    /**
     * The admin site's settings screen offers OAuth 2.0: saved with a client secret, the
     * connection test passes against the introspecting server; the secret is never shown
     * again; a token URL on another origin needs the secret again before anything is sent.
     */
    public function testTheAdminScreenOffersClientCredentials(): void
    {
        $peer = self::idp()->scimServer();
        $dir = Peers::tempDir('oauth2-admin');
        $server = \ScimSamples\PhpServer::preloaded(
            dirname(__DIR__) . '/samples/drupal-site/web/router.php',
            $dir,
            ['ADMIN_SITE_DIR' => $dir, 'JOOMLA_SITE_URL' => 'http://127.0.0.1:9/scim/v2', 'JOOMLA_SITE_DB' => "{$dir}/joomla.db",
                'JOOMLA_SITE_TOKEN_FILE' => "{$dir}/joomla-token"],
            "{$dir}/admin-site.log",
            '',
            '/health',
        );
        try {
            $cookies = [];
            $csrf = '';
            $send = static function (string $method, string $path, array $fields = []) use ($server, &$cookies, &$csrf): array {
                $curl = curl_init("http://127.0.0.1:{$server->port}{$path}");
                $headers = [];
                curl_setopt_array($curl, [
                    CURLOPT_CUSTOMREQUEST => $method,
                    CURLOPT_RETURNTRANSFER => true,
                    CURLOPT_PROXY => '',
                    CURLOPT_TIMEOUT => 60,
                    CURLOPT_HTTPHEADER => $cookies === [] ? [] : ['Cookie: ' . http_build_query($cookies, '', '; ')],
                    CURLOPT_HEADERFUNCTION => static function ($c, string $line) use (&$headers): int {
                        $headers[] = $line;
                        return strlen($line);
                    },
                ]);
                if ($method === 'POST') {
                    curl_setopt($curl, CURLOPT_POSTFIELDS, http_build_query(['csrf' => $csrf] + $fields));
                }
                $body = (string) curl_exec($curl);
                $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
                foreach ($headers as $line) {
                    if (preg_match('/^Set-Cookie:\s*([^=;]+)=([^;]*)/i', $line, $m)) {
                        $cookies[$m[1]] = $m[2];
                    }
                }
                if (preg_match('/name="csrf" value="([0-9a-f]+)"/', $body, $m)) {
                    $csrf = $m[1];
                }
                return [$status, $body];
            };
            $db = new \PDO("sqlite:{$dir}/site.db");
            $send('GET', '/login');
            $db->prepare('UPDATE admin_account SET password_hash = ?')->execute([password_hash('Adm1n-oauth2', PASSWORD_DEFAULT)]);
            $this->assertSame(303, $send('POST', '/login', ['name' => 'admin', 'password' => 'Adm1n-oauth2'])[0]);
            $send('GET', '/settings');
            $fields = ['base_url' => $peer->baseUrl, 'timeout' => '10', 'auth' => 'oauth2', 'token_url' => self::idp()->tokenEndpoint,
                'client_id' => OidcProvider::CLIENT_ID, 'client_secret' => OidcProvider::CLIENT_SECRET, 'scope' => 'scim',
                'client_auth' => 'client_secret_basic'];
            [$status, $body] = $send('POST', '/settings', $fields);
            $this->assertSame(200, $status);
            $this->assertStringContainsString('Connection successful', $body);
            $this->assertStringContainsString('id="client-secret-saved"', $body);
            $this->assertStringNotContainsString(OidcProvider::CLIENT_SECRET, $body);
            $this->assertStringNotContainsString(OidcProvider::CLIENT_SECRET, $send('GET', '/settings')[1]);

            // Kept when left empty for the same token endpoint.
            [, $body] = $send('POST', '/settings', ['client_secret' => ''] + $fields);
            $this->assertStringContainsString('Connection successful', $body);

            // Another origin for the token URL: nothing is saved or sent until the secret is entered again.
            $elsewhere = 'http://127.0.0.1:9/token';
            [, $body] = $send('POST', '/settings', ['token_url' => $elsewhere, 'client_secret' => ''] + $fields);
            $this->assertStringContainsString('id="error-client_secret"', $body);
            $saved = array_map(static fn ($v) => json_decode((string) $v, true), $db->query('SELECT key, value FROM admin_settings')->fetchAll(\PDO::FETCH_KEY_PAIR));
            $this->assertSame(self::idp()->tokenEndpoint, $saved['token_url']);
            $this->assertSame('oauth2', $saved['auth']);
        } finally {
            $server->stop();
            $peer->stop();
        }
    }
}
