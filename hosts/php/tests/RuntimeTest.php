<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\BridgeException;
use ScimProvisioner\Runtime;
use ScimProvisioner\Tests\Support\Peers;

/** Loading the bridge: clear start-up errors, the precompiled cache, the header. */
final class RuntimeTest extends TestCase
{
    public function testMissingPiecesAreReportedClearly(): void
    {
        try {
            new Runtime(['library' => '/nonexistent/libscim_bridge.so']);
            $this->fail('a missing library must be reported');
        } catch (BridgeException $e) {
            $this->assertStringContainsString('the bridge library libscim_bridge.so was not found at /nonexistent/libscim_bridge.so', $e->getMessage());
        }
        try {
            new Runtime(['wasm' => '/nonexistent/x.wasm']);
            $this->fail('a missing component must be reported');
        } catch (BridgeException $e) {
            $this->assertStringContainsString('the component scim_provisioner.wasm was not found at /nonexistent/x.wasm', $e->getMessage());
        }
        $notWasm = Peers::tempDir('runtime') . '/broken.wasm';
        file_put_contents($notWasm, 'this is not a component');
        try {
            new Runtime(['wasm' => $notWasm, 'cache_dir' => dirname($notWasm)]);
            $this->fail('a broken component must be reported');
        } catch (BridgeException $e) {
            $this->assertStringContainsString("the bridge could not load the component {$notWasm}", $e->getMessage());
        }
        $this->expectException(BridgeException::class);
        $this->expectExceptionMessage("unknown runtime option 'memory'");
        new Runtime(['memory' => 5]);
    }

    public function testTheComponentIsCompiledOnceAndLoadedFromTheCache(): void
    {
        $cache = Peers::tempDir('cache');
        $first = new Runtime(['cache_dir' => $cache, 'memory_limit_bytes' => 64 << 20, 'deadline_ms' => 1234]);
        $info = $first->info();
        $this->assertFalse($info['loaded_from_cache']);
        $this->assertSame(64 << 20, $info['memory_limit_bytes']);
        $this->assertSame(1234, $info['deadline_ms']);
        $this->assertFileExists($info['cache_file']);
        $this->assertStringStartsWith(realpath($cache), $info['cache_file']);
        $second = new Runtime(['cache_dir' => $cache]);
        $this->assertTrue($second->info()['loaded_from_cache'], 'the second load uses the precompiled component');
    }

    public function testTheHeaderBecomesFfiDeclarations(): void
    {
        $decl = Runtime::ffiDeclarations(Runtime::defaultHeader());
        $this->assertStringNotContainsString('#', $decl);
        $this->assertStringNotContainsString('/*', $decl);
        $this->assertStringNotContainsString('extern "C"', $decl);
        foreach (['scimp_runtime_new', 'scimp_call', 'scimp_resume', 'scimp_select', 'scimp_string_free', 'scimp_instance_free'] as $fn) {
            $this->assertStringContainsString($fn, $decl);
        }
        // What FFI::cdef takes, with every function resolved in the library.
        $ffi = \FFI::cdef($decl, Runtime::defaultLibrary());
        $this->assertInstanceOf(\FFI::class, $ffi);
    }

    public function testThePreloadedScopeServesFpmSetups(): void
    {
        // opcache.preload in the CLI, as FPM would run it: bin/ffi-preload-header writes the
        // header with FFI_SCOPE/FFI_LIB, preload.php loads it, Runtime uses the scope.
        $dir = Peers::tempDir('preload');
        $lib = dirname(__DIR__) . '/lib';
        $header = "{$dir}/scim_bridge.preload.h";
        exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg("{$lib}/bin/ffi-preload-header") . ' ' . escapeshellarg($header) . ' 2>&1', $out, $status);
        $this->assertSame(0, $status, implode("\n", $out));
        $this->assertStringContainsString('#define FFI_SCOPE "SCIM_BRIDGE"', (string) file_get_contents($header));
        $script = "{$dir}/check.php";
        file_put_contents($script, '<?php require ' . var_export("{$lib}/autoload.php", true) . ';'
            . ' $ffi = FFI::scope("SCIM_BRIDGE"); $rt = new ScimProvisioner\Runtime(); echo $rt->info()["bridge_version"] ?? "?", "\n";');
        $cmd = [PHP_BINARY, '-d', 'opcache.enable_cli=1', '-d', 'opcache.preload=' . "{$lib}/preload.php", '-d', 'ffi.enable=preload', '-d', "ffi.preload={$header}"];
        if (posix_geteuid() === 0) {
            array_push($cmd, '-d', 'opcache.preload_user=root');
        }
        $cmd[] = $script;
        $process = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, ['SCIM_BRIDGE_PRELOAD_HEADER' => $header] + getenv());
        $stdout = (string) stream_get_contents($pipes[1]);
        $stderr = (string) stream_get_contents($pipes[2]);
        $this->assertSame(0, proc_close($process), $stdout . $stderr);
        $this->assertNotSame('', trim($stdout));
    }
}
