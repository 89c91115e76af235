<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * The prebuilt bundle (scripts/package-php; hosts/php/run-tests builds it): unpacked into a
 * temporary directory outside the repository, its checksums verified, and a user
 * provisioned through it into scim2-server by a separate PHP process that loads only the
 * bundle, with SCIM_BRIDGE_LIB and SCIM_PROVISIONER_WASM pointing nowhere (the bundle's own
 * binaries are found first): once through the bundle's autoload.php, once as a site
 * installs it with Composer (a path repository, offline, packagist off).
 */
final class BundleTest extends TestCase
{
    private static function archive(): ?string
    {
        $found = glob(dirname(__DIR__, 3) . '/dist/scim-provisioner-php-*-linux-*-gnu.tar.gz') ?: [];
        usort($found, static fn (string $a, string $b): int => filemtime($b) <=> filemtime($a));
        return $found[0] ?? null;
    }

    /**
     * @param list<string> $command
     * @param array<string, string> $env
     * @return array{0: int, 1: string}
     */
    private static function exec(array $command, string $cwd, array $env = []): array
    {
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, $cwd, array_merge(PhpServer::baseEnv(), $env));
        $out = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return [proc_close($process), $out];
    }

    public function testTheUnpackedBundleProvisionsAUser(): void
    {
        $archive = self::archive();
        if ($archive === null) {
            $this->markTestSkipped('the bundle is not built: run scripts/package-php (hosts/php/run-tests does, unless SCIM_PHP_BUNDLE=skip)');
        }
        $dir = Peers::tempDir('bundle');
        $this->assertStringStartsNotWith(dirname(__DIR__, 3), realpath($dir), 'unpacked outside the repository');
        [$status, $out] = self::exec(['tar', '-xzf', $archive, '-C', $dir], $dir);
        $this->assertSame(0, $status, $out);
        $packages = glob("{$dir}/scim-provisioner-php-*", GLOB_ONLYDIR) ?: [];
        $this->assertCount(1, $packages, 'one top-level directory');
        $pkg = $packages[0];

        foreach (['composer.json', 'README.md', 'lib/autoload.php', 'lib/preload.php', 'lib/src/Runtime.php', 'lib/bin/ffi-preload-header',
            'native/libscim_bridge.so', 'native/scim_bridge.h', 'native/scim_provisioner.wasm', 'SHA256SUMS'] as $file) {
            $this->assertFileExists("{$pkg}/{$file}");
        }
        $sums = array_filter(explode("\n", (string) file_get_contents("{$pkg}/SHA256SUMS")));
        $listed = [];
        foreach ($sums as $line) {
            $this->assertMatchesRegularExpression('/^[0-9a-f]{64}  \S/', $line);
            [$hash, $file] = explode('  ', $line, 2);
            $this->assertSame($hash, hash_file('sha256', "{$pkg}/{$file}"), "checksum of {$file}");
            $listed[] = $file;
        }
        $this->assertContains('native/libscim_bridge.so', $listed);
        $this->assertContains('lib/src/Runtime.php', $listed);

        // The Composer way: a site requires the package from a path repository.
        $site = "{$dir}/site";
        mkdir($site);
        file_put_contents("{$site}/composer.json", json_encode([
            'name' => 'example/site',
            'repositories' => [
                ['type' => 'path', 'url' => $pkg, 'options' => ['symlink' => false, 'versions' => ['scim-provisioner/scim-provisioner' => '0.1.0']]],
                ['packagist.org' => false],
            ],
            'require' => ['scim-provisioner/scim-provisioner' => '^0.1'],
        ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES));
        [$status, $out] = self::exec(['composer', 'install', '--no-interaction'], $site, ['COMPOSER_ALLOW_SUPERUSER' => '1', 'COMPOSER_DISABLE_NETWORK' => '1']);
        $this->assertSame(0, $status, $out);
        $installed = "{$site}/vendor/scim-provisioner/scim-provisioner";
        $this->assertFileExists("{$installed}/native/libscim_bridge.so");

        $peer = Peers::get('scim2-server');
        $script = "{$dir}/provision.php";
        file_put_contents($script, <<<'PHP'
            <?php
            declare(strict_types=1);
            [, $autoload, $base, $name, $cache] = $argv;
            require $autoload;
            $runtime = new ScimProvisioner\Runtime(['cache_dir' => $cache]);
            $connector = ScimProvisioner\Connector::open($runtime, ['base_url' => $base, 'token_env' => 'SCIM_TOKEN', 'timeout' => 10000]);
            $outcome = $connector->provision(new ScimProvisioner\CmsUser((string) random_int(1000, 9999), [
                'name' => $name, 'mail' => "{$name}@drupal.example", 'field_first_name' => 'Bun', 'field_last_name' => 'Dle',
            ]), 'created');
            echo json_encode([
                'action' => $outcome->action->value,
                'remote_id' => $outcome->link?->remoteId,
                'library' => $runtime->libraryPath,
                'wasm' => $runtime->wasmPath,
                'class_file' => (new ReflectionClass(ScimProvisioner\Runtime::class))->getFileName(),
            ]), "\n";
            PHP);
        foreach (["{$pkg}/lib/autoload.php" => $pkg, "{$site}/vendor/autoload.php" => $installed] as $autoload => $root) {
            $pkgReal = (string) realpath($root);
            $name = 'bundle-' . bin2hex(random_bytes(4));
            [$status, $out] = self::exec([PHP_BINARY, $script, $autoload, $peer->baseUrl, $name, "{$dir}/cache"], $dir, [
                'SCIM_TOKEN' => $peer->token,
                'SCIM_BRIDGE_LIB' => '/nonexistent/libscim_bridge.so',
                'SCIM_PROVISIONER_WASM' => '/nonexistent/scim_provisioner.wasm',
            ]);
            $this->assertSame(0, $status, "{$autoload}: {$out}");
            $result = json_decode(trim($out), true);
            $this->assertIsArray($result, $out);
            $this->assertSame('created', $result['action']);
            $this->assertSame("{$pkgReal}/native/libscim_bridge.so", $result['library'], 'the bundle\'s bridge, found first');
            $this->assertSame("{$pkgReal}/native/scim_provisioner.wasm", $result['wasm']);
            $this->assertStringStartsWith($pkgReal . '/lib/src/', (string) realpath($result['class_file']), "{$autoload} loads the bundle's classes");
            [$status, $remote] = $peer->json('GET', '/Users/' . rawurlencode((string) $result['remote_id']));
            $this->assertSame(200, $status, 'read back from scim2-server');
            $this->assertSame($name, $remote['userName']);
            $this->assertSame('Dle', $remote['name']['familyName']);
        }
        fwrite(STDERR, "\nbundle " . basename($archive) . ': ' . filesize($archive) . ' bytes; stripped bridge '
            . filesize("{$pkg}/native/libscim_bridge.so") . " bytes\n");
    }
}
