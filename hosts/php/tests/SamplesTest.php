<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/** The two sample sites and the seed demo, as a site owner runs them. */
final class SamplesTest extends TestCase
{
    private const SAMPLES = __DIR__ . '/../samples';

    /**
     * @param list<string> $args
     * @param array<string, string> $env
     * @return array{0: int, 1: string}
     */
    private static function exec(array $args, array $env = []): array
    {
        $process = proc_open([PHP_BINARY, ...$args], [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, null, array_merge(PhpServer::baseEnv(), $env));
        $out = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return [proc_close($process), $out];
    }

    /**
     * A fresh Drupal sample site: its directory, a token, its configuration file (the token
     * from SCIM_TOKEN) and the CLI to run.
     *
     * @return array{0: string, 1: string, 2: string, 3: string}
     */
    private static function drupalSite(string $name): array
    {
        $dir = Peers::tempDir($name);
        $config = "{$dir}/drupal-site.json";
        file_put_contents($config, json_encode(['connector' => ['token_env' => 'SCIM_TOKEN', 'timeout' => 3000], 'database' => 'drupal.db']));
        return [$dir, bin2hex(random_bytes(16)), $config, self::SAMPLES . '/drupal-site/drupal-site'];
    }

    public function testSeedDemoProvesEveryResultAndLeavesNothingRunning(): void
    {
        [$status, $out] = self::exec([self::SAMPLES . '/seed-demo']);
        $this->assertSame(0, $status, $out);
        $this->assertStringContainsString('demo: every result proven on the server', $out);
        $this->assertStringContainsString('user alice provisioned successfully: created', $out);
        $this->assertStringNotContainsString(' NO', $out);
        preg_match('#SCIM base URL: (\S+)#', $out, $m);
        $this->assertNotEmpty($m[1] ?? null);
        [$code] = PhpServer::get($m[1] . '/ServiceProviderConfig', null, 2.0);
        $this->assertSame(0, $code, 'the Joomla site was stopped');
    }

    public function testAFailedDeliveryStaysQueuedWithItsReasonAndIsDeliveredLater(): void
    {
        [$dir, $token, $config, $site] = self::drupalSite('drupal');
        $down = 'http://127.0.0.1:' . PhpServer::freePort() . '/scim/v2';
        $env = ['SCIM_TOKEN' => $token, 'SCIM_BASE_URL' => $down];

        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'add', '--name', 'frank', '--mail', 'frank@drupal.example', '-f', 'field_last_name=Castle'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertStringContainsString('provisioning: failed, will retry in', $out);
        $this->assertStringContainsString('cannot connect to the SCIM server', $out);
        [, $out] = self::exec([$site, '--config', $config, 'status'], $env);
        $this->assertMatchesRegularExpression('/outbox 1: user 1 created, 1 attempts, next at .*cannot connect/', $out);
        // A sync while the server is still down: the drain fails again, and the reconcile
        // leaves frank to the outbox (it used to try him too, and fail a second time).
        [$status, $out] = self::exec([$site, '--config', $config, 'sync'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertMatchesRegularExpression('/failed 0, waiting 1,/', $out);

        $joomla = PhpServer::joomla($dir, ['SCIM_TOKEN' => $token, 'JOOMLA_SITE_DB' => "{$dir}/joomla.db"]);
        $env['SCIM_BASE_URL'] = $joomla->baseUrl;
        [$status, $out] = self::exec([$site, '--config', $config, 'test-connection'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertStringContainsString('connection successful (discovered: yes, patch: yes, bulk: yes', $out);
        // A later change of the same user waits behind the failed event: order is kept.
        [$status, $out] = self::exec([$site, '--config', $config, 'sync'], $env);
        $this->assertSame(0, $status, $out);
        [, $body] = PhpServer::get($joomla->baseUrl . '/Users?filter=' . rawurlencode('userName eq "frank"'), $token);
        $found = json_decode($body, true);
        $this->assertSame(1, $found['totalResults'], $body);
        $this->assertSame('Castle', $found['Resources'][0]['name']['familyName']);
        [, $out] = self::exec([$site, '--config', $config, 'status'], $env);
        $this->assertStringNotContainsString('outbox ', $out, 'the outbox is empty');
        $this->assertStringContainsString('created -> created', $out);

        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'update', 'frank', '-f', 'field_last_name=Castle-Moon'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertStringContainsString('provisioning: updated', $out);
        [$status, $out] = self::exec([$site, '--config', $config, 'provision', 'frank'], $env);
        $this->assertStringContainsString('user frank provisioned successfully: unchanged', $out);
        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'list'], $env);
        $this->assertMatchesRegularExpression('/^1 frank <frank@drupal.example> active -> remote [0-9a-f-]{36}$/m', $out);
        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'frobnicate'], $env);
        $this->assertSame(2, $status);
        $this->assertStringContainsString('unknown command: users frobnicate', $out);
        $this->assertStringNotContainsString($token, $out);
        $joomla->stop();
    }

    public function testARetriedParkedChangeSendsTheUserAsTheyAreNowNotTheOldValues(): void
    {
        [$dir, $token, $config, $site] = self::drupalSite('drupal-retry');
        $joomla = PhpServer::joomla($dir, ['SCIM_TOKEN' => $token, 'JOOMLA_SITE_DB' => "{$dir}/joomla.db"]);
        $env = ['SCIM_TOKEN' => $token, 'SCIM_BASE_URL' => $joomla->baseUrl];
        $familyName = static function () use ($joomla, $token): string {
            [, $body] = PhpServer::get($joomla->baseUrl . '/Users?filter=' . rawurlencode('userName eq "gina"'), $token);
            return (string) (json_decode($body, true)['Resources'][0]['name']['familyName'] ?? '');
        };

        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'add', '--name', 'gina', '--mail', 'gina@drupal.example', '-f', 'field_last_name=First'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertSame('First', $familyName());
        // A change sent with a revoked token is refused (401, permanent): it is parked.
        [, $out] = self::exec([$site, '--config', $config, 'users', 'update', 'gina', '-f', 'field_last_name=Old'], ['SCIM_TOKEN' => 'revoked'] + $env);
        $this->assertStringContainsString('parked', $out);
        // A later change goes through; the server has it.
        [$status, $out] = self::exec([$site, '--config', $config, 'users', 'update', 'gina', '-f', 'field_last_name=New'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertSame('New', $familyName());
        // Retrying the parked change sends gina as she is now: replaying it would have
        // written "Old" over "New".
        [$status, $out] = self::exec([$site, '--config', $config, 'retry'], $env);
        $this->assertSame(0, $status, $out);
        $this->assertStringContainsString('1 user(s) with parked changes back in line', $out);
        $this->assertSame('New', $familyName());
        [, $out] = self::exec([$site, '--config', $config, 'status'], $env);
        $this->assertStringNotContainsString('outbox ', $out, 'the outbox is empty');
        $this->assertStringContainsString('reconcile -> ', $out);
        $this->assertStringNotContainsString($token, $out);
        $joomla->stop();
    }
}
