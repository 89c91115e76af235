<?php

declare(strict_types=1);

namespace ScimProvisioner;

use FFI;
use FFI\CData;
use ScimProvisioner\Internal\Instance;
use ScimProvisioner\Internal\Json;
use ScimProvisioner\Internal\PrivateDir;

/**
 * The native bridge (libscim_bridge.so, loaded with PHP's FFI extension) and the compiled
 * component. Create one per process and share it between connectors and servers: the
 * component is compiled once and kept precompiled in `cache_dir`, so only the first load
 * in a cache directory pays for a compile.
 *
 * Start-up checks, each with a message that says what to fix: ext-ffi is loaded, FFI is
 * enabled for this SAPI (`ffi.enable=preload`, PHP's default, allows FFI in the CLI and,
 * under FPM, only for declarations preloaded through opcache.preload; see the README), the
 * bridge library, its header and the component `.wasm` exist.
 *
 * Where the binaries come from, first found wins: the runtime option; the package this
 * library was unpacked from (`native/` beside `lib/` in the prebuilt bundle
 * scim-provisioner-php-VERSION-linux-x86_64-gnu.tar.gz); the environment
 * (SCIM_BRIDGE_LIB, SCIM_PROVISIONER_WASM); the repository's build directories.
 *
 * Options (all optional):
 * - `library`: path of libscim_bridge.so (see {@see findLibrary()});
 * - `wasm`: path of the component (see {@see findWasm()});
 * - `header`: the bridge's C header (default: the package's native/scim_bridge.h, else the
 *   repository's hosts/php/bridge/include/scim_bridge.h); unused when the declarations
 *   were preloaded under the FFI scope `SCIM_BRIDGE`;
 * - `memory_limit_bytes`: the most linear memory one instance may hold (bridge default 512 MiB);
 * - `deadline_ms`: how long the guest may run between two host answers (bridge default 10000);
 * - `cache_dir`: where the precompiled component is kept (bridge default: beside the .wasm);
 *   created `0700` when missing, refused when it belongs to another user or others can write it.
 *
 * @phpstan-type RuntimeOptions array{library?: string, wasm?: string, header?: string,
 *     memory_limit_bytes?: int, deadline_ms?: int, cache_dir?: string}
 */
final class Runtime
{
    /** The FFI scope name a preloaded declaration file uses (see bin/ffi-preload-header). */
    public const FFI_SCOPE = 'SCIM_BRIDGE';

    /** @var array<string, FFI> FFI handles by library path: FFI::cdef parses once per process. */
    private static array $ffiByLibrary = [];

    private readonly FFI $ffi;
    private ?CData $runtime = null;
    /** @var \WeakMap<Instance, true> the live instances, freed before the runtime */
    private \WeakMap $instances;

    public readonly string $libraryPath;
    public readonly string $wasmPath;

    /**
     * @param array{library?: string, wasm?: string, header?: string, memory_limit_bytes?: int,
     *     deadline_ms?: int, cache_dir?: string} $options
     * @throws BridgeException when something is missing or the bridge refuses to load
     */
    public function __construct(array $options = [])
    {
        $this->instances = new \WeakMap();
        $known = ['library', 'wasm', 'header', 'memory_limit_bytes', 'deadline_ms', 'cache_dir'];
        foreach (array_keys($options) as $key) {
            if (!in_array($key, $known, true)) {
                throw new BridgeException("unknown runtime option '{$key}'; known: " . implode(', ', $known));
            }
        }
        self::checkFfiAvailable();
        $this->libraryPath = self::resolveFile(
            $options['library'] ?? self::findLibrary(),
            'the bridge library libscim_bridge.so',
            'use the prebuilt bundle, build it with `cargo build -p scim-bridge` (or `--release`), '
                . 'or set the runtime option "library" / env SCIM_BRIDGE_LIB',
        );
        $this->wasmPath = self::resolveFile(
            $options['wasm'] ?? self::findWasm(),
            'the component scim_provisioner.wasm',
            'use the prebuilt bundle, build it with `cargo build -p host-example`, '
                . 'or set the runtime option "wasm" / env SCIM_PROVISIONER_WASM',
        );
        $this->ffi = self::loadFfi($this->libraryPath, $options['header'] ?? self::defaultHeader());
        $bridgeOptions = [];
        foreach (['memory_limit_bytes', 'deadline_ms'] as $key) {
            if (array_key_exists($key, $options)) {
                if (!is_int($options[$key]) || $options[$key] <= 0) {
                    throw new BridgeException("runtime option '{$key}' must be a positive integer");
                }
                $bridgeOptions[$key] = $options[$key];
            }
        }
        if (isset($options['cache_dir'])) {
            // The bridge maps the .cwasm files it finds there as native code: a folder another
            // user created or can write is refused, and a new one is created 0700 (issue 28).
            try {
                $bridgeOptions['cache_dir'] = PrivateDir::ensure((string) $options['cache_dir'], 'the cache directory');
            } catch (\RuntimeException $e) {
                throw new BridgeException($e->getMessage(), 0, $e);
            }
        }
        $error = $this->ffi->new('char *');
        $json = Json::encode((object) $bridgeOptions);
        $ptr = $this->ffi->scimp_runtime_new($this->wasmPath, $json, FFI::addr($error));
        if ($ptr === null || FFI::isNull($ptr)) {
            $message = $this->takeString($error) ?? 'unknown error';
            throw new BridgeException("the bridge could not load the component {$this->wasmPath}: {$message}");
        }
        $this->runtime = $ptr;
    }

    /**
     * What the bridge says about this runtime: wasm, cache_file, loaded_from_cache, load_ms,
     * memory_limit_bytes, deadline_ms, bridge_version.
     *
     * @return array<string, mixed>
     */
    public function info(): array
    {
        $ptr = $this->ffi->scimp_runtime_info($this->live());
        $text = $this->takeString($ptr) ?? '{}';
        $info = Json::decode($text);
        return is_array($info) ? $info : [];
    }

    /**
     * A directory's query answered over stored candidates: each candidate's JSON, with its
     * `id` and `meta`, goes through {@see select()}, and the page comes back as the candidates
     * themselves. Every PHP directory (the SQLite one, WordPress's) filters this one way.
     *
     * @param list<StoredResource> $candidates the resources the search may match, in the
     *     directory's own order
     * @throws DirectoryException `invalid-filter` when the filter does not parse; `other`
     *     when a stored resource's JSON is damaged
     */
    public function selectStored(ResourceKind $kind, Search $search, array $candidates): QueryPage
    {
        $resources = [];
        foreach ($candidates as $stored) {
            $json = json_decode($stored->json, true);
            if (!is_array($json)) {
                throw new DirectoryException('other', "the stored JSON of {$stored->id} is not valid");
            }
            $json['id'] = $stored->id;
            $json['meta'] = [
                'resourceType' => $kind === ResourceKind::User ? 'User' : 'Group',
                'created' => $stored->created,
                'lastModified' => $stored->lastModified,
                'version' => $stored->version,
            ];
            $resources[] = $json;
        }
        $page = $this->select(
            $search->filter,
            $search->sortBy,
            $search->sortDescending,
            $search->startIndex,
            $search->count,
            $resources,
        );
        $out = [];
        foreach ($page['indices'] as $i) {
            $out[] = $candidates[$i]
                ?? throw new DirectoryException('other', "the filter engine returned an unknown index {$i}");
        }
        return new QueryPage($page['total'], $out);
    }

    /**
     * Evaluates a SCIM filter, sort and page over resources with the component's own filter
     * engine, so a PHP directory never disagrees with the guest.
     *
     * @param list<array<string, mixed>> $resources SCIM JSON objects (with `id` and `meta`)
     * @return array{total: int, indices: list<int>} indices into $resources, in page order
     * @throws DirectoryException `invalid-filter` when the filter does not parse
     */
    public function select(
        ?string $filter,
        ?string $sortBy,
        bool $descending,
        int $startIndex,
        int $count,
        array $resources,
    ): array {
        $request = Json::encode([
            'filter' => $filter,
            'sort-by' => $sortBy,
            'sort-descending' => $descending,
            'start-index' => max(1, $startIndex),
            'count' => max(0, $count),
            'resources' => array_map(static fn (array $r): object => (object) $r, $resources),
        ]);
        $ptr = $this->ffi->scimp_select($request, strlen($request));
        $answer = Json::decode($this->takeString($ptr) ?? 'null');
        if (!is_array($answer)) {
            throw new BridgeException('scimp_select returned no answer');
        }
        if (isset($answer['error'])) {
            $message = (string) ($answer['message'] ?? $answer['error']);
            if ($answer['error'] === 'invalid-filter') {
                throw new DirectoryException('invalid-filter', $message);
            }
            throw new DirectoryException('other', "filter evaluation failed: {$message}");
        }
        return [
            'total' => (int) ($answer['total-results'] ?? 0),
            'indices' => array_map('intval', (array) ($answer['indices'] ?? [])),
        ];
    }

    /**
     * @internal A fresh bridge instance (one wasmtime store).
     */
    public function newInstance(): Instance
    {
        $error = $this->ffi->new('char *');
        $ptr = $this->ffi->scimp_instance_new($this->live(), FFI::addr($error));
        if ($ptr === null || FFI::isNull($ptr)) {
            throw new BridgeException(
                'the bridge could not create an instance: ' . ($this->takeString($error) ?? 'unknown error')
            );
        }
        $instance = new Instance($this, $ptr);
        $this->instances[$instance] = true;
        return $instance;
    }

    /** @internal */
    public function instanceCall(CData $instance, string $requestJson): string
    {
        $this->live();
        return $this->takeString($this->ffi->scimp_call($instance, $requestJson, strlen($requestJson)))
            ?? throw new BridgeException('scimp_call returned nothing');
    }

    /** @internal */
    public function instanceResume(CData $instance, string $resultJson): string
    {
        $this->live();
        return $this->takeString($this->ffi->scimp_resume($instance, $resultJson, strlen($resultJson)))
            ?? throw new BridgeException('scimp_resume returned nothing');
    }

    /** @internal */
    public function instanceFree(CData $instance): void
    {
        if ($this->runtime !== null) {
            $this->ffi->scimp_instance_free($instance);
        }
    }

    /** A native handle cannot be copied: clone is refused. */
    private function __clone()
    {
    }

    /**
     * A native handle (and, for sessions, credentials) cannot be serialized.
     *
     * @return array<string, mixed>
     */
    public function __serialize(): array
    {
        throw new LogicException(static::class . ' holds a native handle and cannot be serialized');
    }

    public function __destruct()
    {
        if ($this->runtime === null) {
            return;
        }
        // Instances first: none may outlive the runtime it came from.
        foreach ($this->instances as $instance => $_) {
            $instance->release();
        }
        $this->ffi->scimp_runtime_free($this->runtime);
        $this->runtime = null;
    }

    /**
     * The header's declarations in the form FFI::cdef() takes: comments, preprocessor
     * lines and the C++ guard removed.
     */
    public static function ffiDeclarations(string $headerPath): string
    {
        $text = @file_get_contents($headerPath);
        if ($text === false) {
            throw new BridgeException("cannot read the bridge header {$headerPath}; set the runtime option \"header\"");
        }
        $text = preg_replace('#/\*.*?\*/#s', '', $text) ?? $text;
        $text = preg_replace('#//[^\n]*#', '', $text) ?? $text;
        $text = preg_replace('/^\s*#\s*ifdef\s+__cplusplus.*?^\s*#\s*endif[^\n]*$/ms', '', $text) ?? $text;
        $text = preg_replace('/^\s*#[^\n]*$/m', '', $text) ?? $text;
        return trim(preg_replace("/\n\s*\n+/", "\n", $text) ?? $text) . "\n";
    }

    /** The repository root, for the default paths (this file is hosts/php/lib/src/Runtime.php). */
    public static function repoRoot(): string
    {
        return dirname(__DIR__, 4);
    }

    /** The package's root: the directory holding lib/ (hosts/php in the repository). */
    public static function packageRoot(): string
    {
        return dirname(__DIR__, 2);
    }

    /**
     * A file of the prebuilt bundle's `native/` directory (libscim_bridge.so, scim_bridge.h,
     * scim_provisioner.wasm), or null when this library was not unpacked from the bundle.
     */
    public static function packagedFile(string $name): ?string
    {
        $path = self::packageRoot() . '/native/' . $name;
        return is_file($path) ? $path : null;
    }

    /** The bridge library: the package's, else env SCIM_BRIDGE_LIB, else {@see defaultLibrary()}. */
    public static function findLibrary(): string
    {
        return self::packagedFile('libscim_bridge.so')
            ?? (getenv('SCIM_BRIDGE_LIB') ?: null)
            ?? self::defaultLibrary();
    }

    /** The component: the package's, else env SCIM_PROVISIONER_WASM, else {@see defaultWasm()}. */
    public static function findWasm(): string
    {
        return self::packagedFile('scim_provisioner.wasm')
            ?? (getenv('SCIM_PROVISIONER_WASM') ?: null)
            ?? self::defaultWasm();
    }

    /** The header: the package's, else the one beside the bridge's sources. */
    public static function defaultHeader(): string
    {
        return self::packagedFile('scim_bridge.h') ?? dirname(__DIR__, 2) . '/bridge/include/scim_bridge.h';
    }

    /**
     * The component as the repository's builds leave it: host-example's build script writes
     * target/component/wasm32-wasip2/component/; a plain release build target/wasm32-wasip2/release/.
     */
    public static function defaultWasm(): string
    {
        $candidates = [
            self::repoRoot() . '/target/component/wasm32-wasip2/component/scim_provisioner.wasm',
            self::repoRoot() . '/target/component/wasm32-wasip2/release/scim_provisioner.wasm',
            self::repoRoot() . '/target/wasm32-wasip2/release/scim_provisioner.wasm',
        ];
        foreach ($candidates as $path) {
            if (is_file($path)) {
                return $path;
            }
        }
        return $candidates[0];
    }

    /** The newer of target/release and target/debug libscim_bridge.so (release when neither exists). */
    public static function defaultLibrary(): string
    {
        $best = null;
        $bestTime = -1;
        foreach (['release', 'debug'] as $profile) {
            $path = self::repoRoot() . "/target/{$profile}/libscim_bridge.so";
            $time = @filemtime($path);
            if ($time !== false && $time > $bestTime) {
                [$best, $bestTime] = [$path, $time];
            }
        }
        return $best ?? self::repoRoot() . '/target/release/libscim_bridge.so';
    }

    /**
     * Throws with a message that says what to change when FFI cannot be used here.
     *
     * @throws BridgeException
     */
    public static function checkFfiAvailable(): void
    {
        if (!extension_loaded('ffi') || !class_exists(FFI::class)) {
            throw new BridgeException(
                'the PHP FFI extension (ext-ffi) is not loaded: it is built into Debian\'s php8.2-cli; '
                . 'elsewhere install or enable it (extension=ffi in php.ini). '
                . 'scim-provisioner loads its native bridge through FFI.'
            );
        }
        $mode = strtolower((string) ini_get('ffi.enable'));
        if (in_array($mode, ['0', '', 'off', 'false', 'no'], true)) {
            throw new BridgeException(
                'FFI is disabled (ffi.enable=' . ini_get('ffi.enable') . '): set ffi.enable=preload '
                . '(and preload the bridge under FPM) or ffi.enable=true; see hosts/php/README.md'
            );
        }
        if ($mode === 'preload' && PHP_SAPI !== 'cli' && PHP_SAPI !== 'phpdbg' && !self::preloadedScope()) {
            throw new BridgeException(
                'ffi.enable=preload allows FFI under ' . PHP_SAPI . ' only for declarations preloaded through '
                . 'opcache.preload, and the FFI scope "' . self::FFI_SCOPE . '" was not preloaded: '
                . 'set ffi.preload to the header lib/bin/ffi-preload-header writes and opcache.preload to '
                . 'lib/preload.php (see hosts/php/README.md), or set ffi.enable=true'
            );
        }
    }

    private static function preloadedScope(): ?FFI
    {
        try {
            return FFI::scope(self::FFI_SCOPE);
        } catch (\Throwable) {
            return null;
        }
    }

    private static function loadFfi(string $library, string $header): FFI
    {
        if (isset(self::$ffiByLibrary[$library])) {
            return self::$ffiByLibrary[$library];
        }
        $ffi = self::preloadedScope();
        if ($ffi === null) {
            try {
                $ffi = FFI::cdef(self::ffiDeclarations($header), $library);
            } catch (\FFI\Exception $e) {
                throw new BridgeException("cannot load the bridge library {$library}: {$e->getMessage()}", 0, $e);
            }
        }
        return self::$ffiByLibrary[$library] = $ffi;
    }

    private static function resolveFile(string $path, string $what, string $hint): string
    {
        if (!is_file($path)) {
            throw new BridgeException("{$what} was not found at {$path}: {$hint}");
        }
        if (!is_readable($path)) {
            throw new BridgeException("{$what} at {$path} is not readable by this process");
        }
        return realpath($path) ?: $path;
    }

    private function live(): CData
    {
        return $this->runtime ?? throw new BridgeException('this runtime was freed');
    }

    /** Copies a bridge-owned string into PHP and frees it; null for a null pointer. */
    private function takeString(?CData $ptr): ?string
    {
        if ($ptr === null || FFI::isNull($ptr)) {
            return null;
        }
        try {
            return FFI::string($ptr);
        } finally {
            $this->ffi->scimp_string_free($ptr);
        }
    }
}
