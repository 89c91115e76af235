<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\PdoMetrics;
use ScimProvisioner\PrometheusText;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * The PHP admin site's provisioning counters (issue 31, part 3; docs/metrics.md): kept in the
 * site's SQLite by the library's PdoMetrics, shown on the Provisioning screen, and served at
 * GET /metrics (Prometheus text format 0.0.4) to the metrics token only.
 */
final class AdminSiteMetricsTest extends TestCase
{
    /** A sample line: `name{labels} value` (labels optional, escaped as the format says). */
    private const SAMPLE = '/^[a-zA-Z_:][a-zA-Z0-9_:]*'
        . '(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\n]|\\\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\n]|\\\\.)*")*\})?'
        . ' (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)$/';

    /**
     * Parses the text format strictly: every line a HELP, a TYPE or a sample of a family
     * whose TYPE came before; promtool (Debian's prometheus) checks it too when installed.
     *
     * @return array<string, float> "name{labels}" => value
     */
    private function parse(string $text): array
    {
        $this->assertStringEndsWith("\n", $text);
        $typed = [];
        $samples = [];
        foreach (explode("\n", rtrim($text, "\n")) as $line) {
            if (preg_match('/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/', $line, $m)) {
                $typed[$m[1]] = true;
                continue;
            }
            if (str_starts_with($line, '# HELP ')) {
                continue;
            }
            $this->assertMatchesRegularExpression(self::SAMPLE, $line);
            $name = (string) preg_replace('/[{ ].*$/s', '', $line);
            $family = (string) preg_replace('/_(bucket|sum|count)$/', '', $name);
            $this->assertTrue(isset($typed[$name]) || isset($typed[$family]), "{$name} has no TYPE line before it");
            $space = strrpos($line, ' ');
            $samples[substr($line, 0, (int) $space)] = (float) substr($line, (int) $space + 1);
        }
        if (is_executable('/usr/bin/promtool')) {
            $proc = proc_open(['/usr/bin/promtool', 'check', 'metrics'], [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            fwrite($pipes[0], $text);
            fclose($pipes[0]);
            $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
            $this->assertSame(0, proc_close($proc), "promtool check metrics: {$out}");
        }
        return $samples;
    }

    public function testLabelsAreEscapedAndAddsAreAtomicAcrossConnections(): void
    {
        $file = Peers::tempDir('metrics-unit') . '/m.db';
        $a = new \PDO("sqlite:{$file}");
        $b = new \PDO("sqlite:{$file}");
        $a->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        $b->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        (new PdoMetrics($a))->install();
        for ($i = 0; $i < 5; $i++) {
            (new PdoMetrics($a))->add('x_total', ['reason' => "a\"b\\c\nd"]);
            (new PdoMetrics($b))->add('x_total', ['reason' => "a\"b\\c\nd"], 2.0);
        }
        $text = PrometheusText::render(['x_total' => ['counter', 'Test "help"']], (new PdoMetrics($b))->rows());
        $this->assertSame(['x_total{reason="a\"b\\\\c\nd"}' => 15.0], $this->parse($text));
        $this->assertTrue(PrometheusText::verifyToken(PrometheusText::tokenHash('t0k'), 't0k'));
        $this->assertFalse(PrometheusText::verifyToken(PrometheusText::tokenHash('t0k'), 't0K'));
        $this->assertFalse(PrometheusText::verifyToken('', ''));
        $this->assertSame('t0k', PrometheusText::bearer('bearer t0k'));
        $this->assertNull(PrometheusText::bearer('Basic dDBr'));
    }

    public function testCountersMoveAndOnlyTheMetricsTokenReadsThem(): void
    {
        $peer = Peers::get('scim2-server');
        $dir = Peers::tempDir('admin-metrics');
        $server = PhpServer::preloaded(
            dirname(__DIR__) . '/samples/drupal-site/web/router.php',
            $dir,
            ['ADMIN_SITE_DIR' => $dir],
            "{$dir}/admin-site.log",
            '',
            '/health',
        );
        try {
            $cookies = [];
            $csrf = '';
            $send = static function (string $method, string $path, array $fields = [], array $headers = []) use ($server, &$cookies, &$csrf): array {
                $curl = curl_init("http://127.0.0.1:{$server->port}{$path}");
                $received = [];
                if ($cookies !== [] && $headers === []) {
                    $headers[] = 'Cookie: ' . http_build_query($cookies, '', '; ');
                }
                curl_setopt_array($curl, [
                    CURLOPT_CUSTOMREQUEST => $method,
                    CURLOPT_RETURNTRANSFER => true,
                    CURLOPT_PROXY => '',
                    CURLOPT_TIMEOUT => 60,
                    CURLOPT_HTTPHEADER => $headers,
                    CURLOPT_HEADERFUNCTION => static function ($c, string $line) use (&$received): int {
                        $received[] = $line;
                        return strlen($line);
                    },
                ]);
                if ($method === 'POST') {
                    curl_setopt($curl, CURLOPT_POSTFIELDS, http_build_query(['csrf' => $csrf] + $fields));
                }
                $body = (string) curl_exec($curl);
                $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
                $type = (string) curl_getinfo($curl, CURLINFO_CONTENT_TYPE);
                foreach ($received as $line) {
                    if (preg_match('/^Set-Cookie:\s*([^=;]+)=([^;]*)/i', $line, $m)) {
                        $cookies[$m[1]] = $m[2];
                    }
                }
                if (preg_match('/name="csrf" value="([0-9a-f]+)"/', $body, $m)) {
                    $csrf = $m[1];
                }
                return [$status, $body, $type];
            };
            $scrape = static fn (?string $authorization): array
                => $send('GET', '/metrics', [], $authorization === null ? ['X-None: 1'] : ["Authorization: {$authorization}"]);

            // Before any metrics token exists, nothing reads them.
            $this->assertSame(401, $scrape(null)[0]);
            $this->assertSame(401, $scrape('Bearer ')[0]);

            $db = new \PDO("sqlite:{$dir}/site.db");
            $send('GET', '/login');
            $db->prepare('UPDATE admin_account SET password_hash = ?')->execute([password_hash('Adm1n-metrics', PASSWORD_DEFAULT)]);
            $this->assertSame(303, $send('POST', '/login', ['name' => 'admin', 'password' => 'Adm1n-metrics'])[0]);
            $send('GET', '/settings');
            [$status, $body] = $send('POST', '/settings', ['base_url' => $peer->baseUrl, 'token' => $peer->token, 'timeout' => '10', 'auth' => 'bearer']);
            $this->assertSame(200, $status);
            $this->assertStringContainsString('Connection successful', $body);

            // A user added on the People screen is provisioned at once (automatic provisioning).
            $send('GET', '/users');
            $this->assertSame(303, $send('POST', '/users', ['action' => 'add', 'name' => 'metrics.alice', 'mail' => 'metrics.alice@example.com',
                'field_first_name' => 'Alice', 'field_last_name' => '<b>Metrics</b>'])[0]);
            $send('GET', '/provisioning');
            $this->assertSame(303, $send('POST', '/provisioning', ['action' => 'sync'])[0]);

            [$status, $body] = $send('POST', '/provisioning', ['action' => 'metrics_token']);
            $this->assertSame(200, $status);
            $this->assertSame(1, preg_match('/<code id="metrics-token">([0-9a-f]{64})<\/code>/', $body, $m));
            $token = $m[1];
            // The screen shows the counters (escaped).
            $this->assertMatchesRegularExpression('#<td>scim_users_provisioned_total</td><td>created ok</td><td class="number">1</td>#', $body);
            $this->assertStringNotContainsString('<b>Metrics</b>', $body);
            // Only the hash is kept.
            $saved = $db->query("SELECT value FROM admin_settings WHERE key = 'metrics_token_sha256'")->fetchColumn();
            $this->assertSame(json_encode(hash('sha256', $token)), $saved);

            $this->assertSame(401, $scrape(null)[0]);
            $this->assertSame(401, $scrape('Bearer ' . str_repeat('0', 64))[0]);
            $this->assertSame(401, $scrape("Bearer {$peer->token}")[0], 'the SCIM token must not read the metrics');
            $this->assertSame(401, $scrape('Basic ' . base64_encode("admin:{$token}"))[0]);
            // The admin session's cookie does not count either.
            $this->assertSame(401, $send('GET', '/metrics')[0]);

            [$status, $text, $type] = $scrape("Bearer {$token}");
            $this->assertSame(200, $status, $text);
            $this->assertStringStartsWith('text/plain; version=0.0.4', $type);
            $samples = $this->parse($text);
            $this->assertSame(1.0, $samples['scim_users_provisioned_total{action="created",result="ok"}'] ?? null, $text);
            $this->assertSame(1.0, $samples['scim_syncs_total{result="ok"}'] ?? null, $text);
            $this->assertSame(0.0, $samples['scim_outbox_depth'] ?? null, $text);
            $this->assertSame(0.0, $samples['scim_outbox_parked'] ?? null, $text);
            $this->assertArrayNotHasKey('scim_users_provisioned_total{action="created",result="failed"}', $samples);
            foreach ([$peer->token, 'metrics.alice', 'example.com', $token] as $secret) {
                $this->assertStringNotContainsString($secret, $text);
            }

            // A second user moves the counter again; rotating stops the old token at once.
            $send('GET', '/users');
            $this->assertSame(303, $send('POST', '/users', ['action' => 'add', 'name' => 'metrics.bob', 'mail' => 'metrics.bob@example.com'])[0]);
            $samples = $this->parse($scrape("Bearer {$token}")[1]);
            $this->assertSame(2.0, $samples['scim_users_provisioned_total{action="created",result="ok"}'] ?? null);
            $send('GET', '/provisioning');
            [, $body] = $send('POST', '/provisioning', ['action' => 'metrics_token']);
            $this->assertSame(1, preg_match('/<code id="metrics-token">([0-9a-f]{64})<\/code>/', $body, $m));
            $this->assertSame(401, $scrape("Bearer {$token}")[0]);
            $this->assertSame(200, $scrape("Bearer {$m[1]}")[0]);
        } finally {
            $server->stop();
        }
    }
}
