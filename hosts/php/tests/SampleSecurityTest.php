<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

require_once __DIR__ . '/../samples/drupal-site/web/Admin.php';

/**
 * Issue 28 (security, second pass), the PHP samples' parts: private state folders and files
 * (1), a saved token never sent to a new origin (2), no unauthenticated user listing (3),
 * plain http:// only to loopback (7), admin sessions (8). Each drives the real sites under
 * php -S over HTTP, with a cookie jar as a browser would.
 */
final class SampleSecurityTest extends TestCase
{
    private const SAMPLES = __DIR__ . '/../samples';
    private const ADMIN_PASSWORD = 'Adm1n-Pa55-for-tests';

    /** @var list<PhpServer> */
    private array $servers = [];

    protected function tearDown(): void
    {
        foreach ($this->servers as $server) {
            $server->stop();
        }
        $this->servers = [];
    }

    /**
     * The admin site under php -S on a fresh private state folder, with a known admin password.
     *
     * @param array<string, string> $env
     * @return array{0: PhpServer, 1: string} the server and its state folder
     */
    private function adminSite(string $name, array $env = []): array
    {
        $dir = Peers::tempDir($name);
        $env += ['ADMIN_SITE_DIR' => $dir, 'JOOMLA_SITE_URL' => 'http://127.0.0.1:9/scim/v2', 'JOOMLA_SITE_DB' => "{$dir}/joomla.db",
            'JOOMLA_SITE_TOKEN_FILE' => "{$dir}/joomla-token"];
        $server = PhpServer::preloaded(self::SAMPLES . '/drupal-site/web/router.php', $dir, $env, "{$dir}/admin-site.log", '', '/health');
        $this->servers[] = $server;
        $this->assertSame(200, (new AdminBrowser($server->port))->get('/login')[0], PhpServer::tail("{$dir}/admin-site.log"));
        // The router created the account with a random password: give it one the test knows.
        $db = new \PDO("sqlite:{$dir}/site.db");
        $db->prepare('UPDATE admin_account SET password_hash = ?')->execute([password_hash(self::ADMIN_PASSWORD, PASSWORD_DEFAULT)]);
        return [$server, $dir];
    }

    private function loggedIn(PhpServer $server): AdminBrowser
    {
        $browser = new AdminBrowser($server->port);
        [$status, , $headers] = $browser->post('/login', ['name' => 'admin', 'password' => self::ADMIN_PASSWORD]);
        $this->assertSame(303, $status, 'logged in');
        $this->assertStringContainsString('/settings', $headers['location'] ?? '');
        return $browser;
    }

    /** A loopback SCIM "server" that records the Authorization header of every request. */
    private function recordingServer(string $dir): PhpServer
    {
        $router = "{$dir}/recorder.php";
        file_put_contents($router, '<?php $h = function_exists("getallheaders") ? getallheaders() : [];'
            . ' $a = ""; foreach ($h as $k => $v) { if (strcasecmp($k, "Authorization") === 0) { $a = $v; } }'
            . ' if ($a !== "") { file_put_contents(__DIR__ . "/seen-authorization", $a . "\n", FILE_APPEND); }'
            . ' if (($_SERVER["REQUEST_URI"] ?? "") === "/ready") { echo "ok"; return true; }'
            . ' http_response_code(401); header("Content-Type: application/scim+json");'
            . ' echo json_encode(["schemas" => ["urn:ietf:params:scim:api:messages:2.0:Error"], "status" => "401", "detail" => "no"]); return true;');
        $server = new PhpServer($router, [], "{$dir}/recorder.log", '', 30.0, [], '/ready');
        $this->servers[] = $server;
        return $server;
    }

    /** Finding 3: the Joomla-like site's user listing answers only to the SCIM token. */
    public function testTheJoomlaUserListingNeedsTheScimToken(): void
    {
        $dir = Peers::tempDir('joomla-listing');
        $token = bin2hex(random_bytes(16));
        $joomla = PhpServer::joomla($dir, ['SCIM_TOKEN' => $token, 'JOOMLA_SITE_DB' => "{$dir}/joomla.db"]);
        $this->servers[] = $joomla;
        [$status] = PhpServer::request('POST', "{$joomla->baseUrl}/Users", $token, (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'], 'userName' => 'listed.user',
            'emails' => [['value' => 'listed@example.test', 'type' => 'work']],
        ]));
        $this->assertSame(201, $status);
        foreach (['/', '/users'] as $path) {
            foreach ([null, 'wrong-token'] as $presented) {
                [$status, $body] = PhpServer::get("http://127.0.0.1:{$joomla->port}{$path}", $presented);
                $this->assertSame(401, $status, "{$path} with " . ($presented ?? 'no token'));
                $this->assertStringNotContainsString('listed', $body);
            }
            [$status, $body] = PhpServer::get("http://127.0.0.1:{$joomla->port}{$path}", $token);
            $this->assertSame(200, $status, $body);
            $this->assertSame('listed.user', json_decode($body, true)['users'][0]['name'] ?? null);
        }
        // The SQLite files the site created are its own (0600 from the start).
        foreach (glob("{$dir}/joomla.db*") ?: [] as $file) {
            $this->assertSame(0o600, fileperms($file) & 0o777, basename($file));
        }
    }

    /** Finding 1: seed-demo works in a fresh mkdtemp folder (not /tmp/scim-php-demo-<pid>), its files 0600. */
    public function testSeedDemoKeepsItsStateInAFreshPrivateFolder(): void
    {
        $process = proc_open([PHP_BINARY, self::SAMPLES . '/seed-demo', '--keep'], [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, null, PhpServer::baseEnv());
        $out = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        $this->assertSame(0, proc_close($process), $out);
        $this->assertSame(1, preg_match('#serving SCIM from (\S+)/joomla\.db#', $out, $m), $out);
        $dir = $m[1];
        try {
            $this->assertMatchesRegularExpression('#/scim-php-demo-[0-9a-f]{16}$#', $dir, 'a random name, not the pid');
            $this->assertSame(0o700, fileperms($dir) & 0o777);
            $files = glob("{$dir}/*") ?: [];
            $this->assertNotEmpty($files);
            foreach ($files as $file) {
                if (is_file($file)) {
                    $this->assertSame(0o600, fileperms($file) & 0o777, basename($file));
                }
            }
        } finally {
            foreach (glob("{$dir}/*") ?: [] as $file) {
                @unlink($file);
            }
            @rmdir($dir);
        }
    }

    /**
     * Finding 1: the admin site refuses a state folder another user owns or others can write
     * (where they could plant an admin row, a session or native code), and creates its
     * SQLite, session and token files 0600.
     */
    public function testTheAdminSiteRefusesAStateFolderOthersCanWriteAndKeepsItsFilesPrivate(): void
    {
        $shared = Peers::tempDir('shared-state');
        chmod($shared, 0o777);
        $process = proc_open(
            [PHP_BINARY, self::SAMPLES . '/admin-site', '--dir', $shared],
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            PhpServer::baseEnv(),
        );
        $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        $this->assertSame(2, proc_close($process), $out);
        $this->assertStringContainsString("refusing the folder {$shared}", $out);
        $this->assertStringContainsString('writable by its group and other users (mode 0777)', $out);
        $this->assertFileDoesNotExist("{$shared}/site.db", 'nothing was written there');

        if (posix_geteuid() === 0) {
            $foreign = Peers::tempDir('foreign-state');
            chmod($foreign, 0o755);
            chown($foreign, 65534);
            $site = new PhpServer(self::SAMPLES . '/drupal-site/web/router.php', ['ADMIN_SITE_DIR' => $foreign], Peers::tempDir('foreign-log') . '/site.log', '', 30.0, ['ffi.enable' => '1'], '/health');
            $this->servers[] = $site;
            [$status, $body] = (new AdminBrowser($site->port))->get('/login');
            $this->assertSame(500, $status);
            $this->assertStringContainsString('state folder is not private', $body);
            $this->assertFileDoesNotExist("{$foreign}/site.db");
        }

        [$server, $dir] = $this->adminSite('private-state');
        $browser = $this->loggedIn($server);
        $browser->get('/server');
        [$status, $body] = $browser->post('/server', ['action' => 'rotate']);
        $this->assertSame(200, $status);
        $this->assertStringContainsString('new-token', $body);
        $this->assertFileExists("{$dir}/joomla-token");
        $files = array_merge(glob("{$dir}/site.db*") ?: [], glob("{$dir}/sessions/*") ?: [], ["{$dir}/joomla-token"]);
        $this->assertNotEmpty(glob("{$dir}/sessions/*") ?: [], 'a session file was written');
        foreach ($files as $file) {
            $this->assertSame(0o600, fileperms($file) & 0o777, basename($file));
        }
        $this->assertSame(0o700, fileperms("{$dir}/sessions") & 0o777);
    }

    /** The admin site's saved settings, read from its SQLite file. */
    private static function savedSettings(string $dir): array
    {
        $db = new \PDO("sqlite:{$dir}/site.db");
        $rows = $db->query('SELECT key, value FROM admin_settings')->fetchAll(\PDO::FETCH_KEY_PAIR);
        return array_map(static fn ($v) => json_decode((string) $v, true), $rows);
    }

    /**
     * Finding 2: with a token saved for one server, pointing the base URL at another origin
     * with the token field empty sends nothing there and asks for its token; the storage
     * clears the saved token whenever the origin changes without a new one.
     */
    public function testASavedTokenIsNeverSentToANewOrigin(): void
    {
        [$server, $dir] = $this->adminSite('new-origin');
        $first = $this->recordingServer(Peers::tempDir('first-origin'));
        $secondDir = Peers::tempDir('second-origin');
        $second = $this->recordingServer($secondDir);
        $browser = $this->loggedIn($server);
        $browser->get('/settings');
        $token = 'Saved-Token-' . bin2hex(random_bytes(8));
        [$status] = $browser->post('/settings', ['base_url' => "http://127.0.0.1:{$first->port}/scim/v2", 'token' => $token, 'timeout' => '5']);
        $this->assertSame(200, $status);
        $this->assertSame($token, self::savedSettings($dir)['token']);

        [$status, $body] = $browser->post('/settings', ['base_url' => "http://127.0.0.1:{$second->port}/scim/v2", 'token' => '', 'timeout' => '5']);
        $this->assertSame(200, $status);
        $this->assertStringContainsString('id="error-token"', $body);
        $this->assertStringContainsString('enter its bearer token', $body);
        $this->assertFileDoesNotExist("{$secondDir}/seen-authorization", 'the saved token went to the new server');
        $this->assertSame("http://127.0.0.1:{$first->port}/scim/v2", self::savedSettings($dir)['base_url'], 'nothing saved');

        // The same origin (another path) keeps the token.
        [$status, $body] = $browser->post('/settings', ['base_url' => "http://127.0.0.1:{$first->port}/other/v2", 'token' => '', 'timeout' => '5']);
        $this->assertStringNotContainsString('id="error-token"', $body);
        $this->assertSame($token, self::savedSettings($dir)['token']);

        // The storage itself: a new origin without a new token clears the saved one.
        $admin = new \ScimSamples\DrupalSite\Web\Admin($dir);
        $admin->save(['base_url' => "https://elsewhere.example:{$second->port}/scim/v2"]);
        $this->assertSame('', $admin->settings()['token']);
    }

    /** Finding 7: plain http:// to a host other than loopback is refused unless explicitly allowed. */
    public function testPlainHttpToARemoteHostIsRefusedUnlessAllowed(): void
    {
        [$server, $dir] = $this->adminSite('plain-http');
        $browser = $this->loggedIn($server);
        $browser->get('/settings');
        foreach (['http://joomla.example/scim/v2', 'http://10.0.0.5:8080/scim/v2', 'http://127.0.0.1.example/scim/v2'] as $url) {
            [$status, $body] = $browser->post('/settings', ['base_url' => $url, 'token' => 'T0ken-for-plain-http', 'timeout' => '2']);
            $this->assertSame(200, $status);
            $this->assertStringContainsString('id="error-base_url"', $body, $url);
            $this->assertStringContainsString('allowed only to this machine', $body);
            $this->assertArrayNotHasKey('base_url', self::savedSettings($dir), "{$url}: nothing saved");
        }
        [, $body] = $browser->post('/settings', ['base_url' => 'http://joomla.example/scim/v2', 'token' => 'T0ken-for-plain-http', 'timeout' => '2', 'allow_insecure_http' => '1']);
        $this->assertStringNotContainsString('id="error-base_url"', $body);
        $saved = self::savedSettings($dir);
        $this->assertSame('http://joomla.example/scim/v2', $saved['base_url']);
        $this->assertTrue($saved['allow_insecure_http']);
        $this->assertTrue((new \ScimSamples\DrupalSite\Web\Admin($dir))->connectorConfig()['policy']['allow_insecure_http']);
    }

    /** The value of the session cookie one Set-Cookie line sets, or null. */
    private static function sessionCookie(array $setCookies): ?string
    {
        foreach ($setCookies as $line) {
            if (preg_match('/^drupal_admin=([^;]*)/', $line, $m)) {
                return $m[1];
            }
        }
        return null;
    }

    /**
     * Finding 8: strict session ids, the CSRF token rotated at login, logout expiring the
     * cookie, Secure over HTTPS, idle and absolute expiry, throttled failed logins refused
     * before any password check, and page scripts that run only through the router.
     */
    public function testAdminSessionsAreStrictRotatedExpiringAndThrottled(): void
    {
        [$server] = $this->adminSite('sessions', ['ADMIN_SITE_SESSION_IDLE' => '2', 'ADMIN_SITE_SESSION_MAX' => '6']);

        // An id the site never issued (planted by an attacker) is not adopted.
        $planted = 'attackerchosensessionid0123456789';
        $curl = curl_init("http://127.0.0.1:{$server->port}/login");
        curl_setopt_array($curl, [CURLOPT_RETURNTRANSFER => true, CURLOPT_HEADER => true, CURLOPT_PROXY => '',
            CURLOPT_HTTPHEADER => ["Cookie: drupal_admin={$planted}"]]);
        $raw = (string) curl_exec($curl);
        curl_close($curl);
        $this->assertMatchesRegularExpression('/Set-Cookie: drupal_admin=(?!' . $planted . ')[^;]+/i', $raw, 'a fresh id replaces the planted one');

        // The CSRF token seen before login is not the one after it.
        $browser = new AdminBrowser($server->port);
        [, $loginPage] = $browser->get('/login');
        preg_match('/name="csrf" value="([0-9a-f]+)"/', $loginPage, $before);
        $this->loggedIn2($browser);
        [$status, $settings] = $browser->get('/settings');
        $this->assertSame(200, $status);
        preg_match('/name="csrf" value="([0-9a-f]+)"/', $settings, $after);
        $this->assertNotSame($before[1], $after[1], 'the CSRF token is rotated at login');

        // Logout expires the cookie in the browser, and the old session is gone.
        [$status, , , $setCookies] = $browser->post('/logout', []);
        $this->assertSame(303, $status);
        $expired = array_filter($setCookies, static fn (string $l): bool => str_starts_with($l, 'drupal_admin=')
            && (bool) preg_match('/expires=Thu, 01[- ]Jan[- ]1970|Max-Age=0/i', $l));
        $this->assertNotEmpty($expired, 'logout expires the cookie: ' . implode(' | ', $setCookies));
        $this->assertSame(303, $browser->get('/settings')[0]);

        // Secure over HTTPS (here: behind a TLS proxy saying so).
        [, , , $setCookies] = (new AdminBrowser($server->port, 'https'))->get('/login');
        $this->assertMatchesRegularExpression('/;\s*secure/i', implode("\n", $setCookies));
        [, , , $setCookies] = (new AdminBrowser($server->port))->get('/login');
        $this->assertDoesNotMatchRegularExpression('/;\s*secure/i', implode("\n", $setCookies));

        // Idle expiry (2 s here): a session left alone is logged out (well before its 6 s maximum).
        $idle = new AdminBrowser($server->port);
        $this->loggedIn2($idle);
        $lastActivity = microtime(true);
        // The site counts whole seconds: past 3 s, every clock reading is more than 2 s idle.
        while (microtime(true) < $lastActivity + 3.2) {
            usleep(50_000);   // the condition is the idle time itself: no request may refresh it
        }
        $this->assertSame(303, $idle->getWithoutRefresh(), 'an idle session expires');

        // Absolute expiry (6 s here): a session kept busy still ends.
        $busy = new AdminBrowser($server->port);
        $this->loggedIn2($busy);
        $started = microtime(true);
        do {
            usleep(300_000);
            $status = $busy->get('/settings')[0];
        } while ($status === 200 && microtime(true) < $started + 30);
        $this->assertSame(303, $status, 'a busy session ends at its absolute lifetime');
        $this->assertGreaterThanOrEqual(6.0 - 1.0, microtime(true) - $started);

        // Failed logins: after a few, the next attempt is refused at once (429, Retry-After),
        // even with the right password, without a password check.
        $attacker = new AdminBrowser($server->port);
        $attacker->get('/login');
        $statuses = [];
        for ($i = 0; $i < 4; $i++) {
            $statuses[] = $attacker->post('/login', ['name' => 'admin', 'password' => "wrong-{$i}"])[0];
        }
        $this->assertSame([200, 200, 200, 429], $statuses, 'the fourth attempt waits');
        [$status, $body, $headers] = $attacker->post('/login', ['name' => 'admin', 'password' => self::ADMIN_PASSWORD]);
        $this->assertSame(429, $status, 'refused while throttled, before any password check');
        $this->assertGreaterThan(0, (int) ($headers['retry-after'] ?? 0));
        $this->assertStringContainsString('Too many failed logins', $body);

        // A page script reached directly (not through the router) refuses to run.
        exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg(self::SAMPLES . '/drupal-site/web/pages/settings.php') . ' 2>&1', $out, $code);
        $this->assertSame(1, $code);
        $this->assertStringContainsString('runs only through the admin site', implode("\n", $out));
    }

    private function loggedIn2(AdminBrowser $browser): void
    {
        $browser->get('/login');
        [$status] = $browser->post('/login', ['name' => 'admin', 'password' => self::ADMIN_PASSWORD]);
        $this->assertSame(303, $status, 'logged in');
    }
}

/** A cookie-keeping HTTP client for the admin site, reading each form's CSRF token as a browser does. */
final class AdminBrowser
{
    private string $csrf = '';
    /** @var array<string, string> */
    private array $cookies = [];

    public function __construct(public readonly int $port, private readonly string $scheme = 'http')
    {
    }

    /** @return array{0: int, 1: string, 2: array<string, string>, 3: list<string>} status, body, headers (last value), Set-Cookie lines */
    public function get(string $path): array
    {
        return $this->send('GET', $path, null);
    }

    /**
     * Posts a form with the CSRF token of the last page (loading $path first when none was seen).
     *
     * @param array<string, string> $fields
     * @return array{0: int, 1: string, 2: array<string, string>, 3: list<string>}
     */
    public function post(string $path, array $fields): array
    {
        if ($this->csrf === '') {
            $this->get($path);
        }
        return $this->send('POST', $path, http_build_query(['csrf' => $this->csrf] + $fields));
    }

    /** GET /settings, whose status tells whether the session is still valid. */
    public function getWithoutRefresh(): int
    {
        return $this->send('GET', '/settings', null)[0];
    }

    public function hasCookie(string $name): bool
    {
        return isset($this->cookies[$name]);
    }

    /** @return array{0: int, 1: string, 2: array<string, string>, 3: list<string>} */
    private function send(string $method, string $path, ?string $body): array
    {
        $curl = curl_init("http://127.0.0.1:{$this->port}{$path}");
        $headerLines = [];
        $requestHeaders = [];
        if ($this->cookies !== []) {
            $requestHeaders[] = 'Cookie: ' . implode('; ', array_map(static fn ($k, $v) => "{$k}={$v}", array_keys($this->cookies), $this->cookies));
        }
        if ($this->scheme === 'https') {
            $requestHeaders[] = 'X-Forwarded-Proto: https';
        }
        curl_setopt_array($curl, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_TIMEOUT => 60,
            CURLOPT_PROXY => '',
            CURLOPT_HTTPHEADER => $requestHeaders,
            CURLOPT_HEADERFUNCTION => static function ($c, string $line) use (&$headerLines): int {
                $headerLines[] = rtrim($line, "\r\n");
                return strlen($line);
            },
        ]);
        if ($body !== null) {
            curl_setopt($curl, CURLOPT_POSTFIELDS, $body);
        }
        $text = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        curl_close($curl);
        $headers = [];
        $setCookies = [];
        foreach ($headerLines as $line) {
            if (!str_contains($line, ':')) {
                continue;
            }
            [$name, $value] = array_map('trim', explode(':', $line, 2));
            $headers[strtolower($name)] = $value;
            if (strcasecmp($name, 'Set-Cookie') === 0) {
                $setCookies[] = $value;
                [$pair] = explode(';', $value, 2);
                [$k, $v] = array_pad(explode('=', $pair, 2), 2, '');
                if ($v === '' || $v === 'deleted' || preg_match('/expires=Thu, 01[- ]Jan[- ]1970/i', $value) || preg_match('/Max-Age=0\b/i', $value)) {
                    unset($this->cookies[$k]);
                } else {
                    $this->cookies[$k] = $v;
                }
            }
        }
        $html = is_string($text) ? $text : '';
        if (preg_match('/name="csrf" value="([0-9a-f]+)"/', $html, $m)) {
            $this->csrf = $m[1];
        }
        return [$status, $html, $headers, $setCookies];
    }
}
