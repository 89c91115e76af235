<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\BridgeException;
use ScimProvisioner\Connector;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Runtime;

/**
 * The plugin's one object: the facade the admin screens, the REST routes, the hooks, cron
 * and bin/worker share. Every method returns data; nothing here prints.
 *
 * Where the native files come from (first found wins): the plugin's own `native/`
 * (libscim_bridge.so, scim_bridge.h, scim_provisioner.wasm, as the zip ships them); the
 * constants SCIM_PROVISIONER_BRIDGE_LIB / SCIM_PROVISIONER_WASM (wp-config.php); the
 * environment SCIM_BRIDGE_LIB / SCIM_PROVISIONER_WASM; then the repository's builds (the
 * library's defaults, for development).
 */
final class Plugin
{
    public const VERSION = '0.1.0';
    public const SLUG = 'scim-provisioner';

    private static ?self $instance = null;

    private ?Settings $settings = null;
    private ?ClientService $client = null;
    private ?ServerService $server = null;
    private ?LogRepository $log = null;
    private ?Outbox $outbox = null;
    private ?Runtime $runtime = null;
    private ?string $privateCacheDir = null;

    private function __construct(public readonly string $pluginDir)
    {
    }

    public static function instance(): self
    {
        return self::$instance ??= new self(dirname(__DIR__));
    }

    /** Registers every hook (called once from scim-provisioner.php). */
    public static function boot(): void
    {
        $plugin = self::instance();
        Schema::maybeUpgrade();
        Metrics::maybeInstall();
        UserHooks::register($plugin);
        Cron::register($plugin);
        RestController::register($plugin);
        MetricsRoutes::register($plugin);
        add_action('admin_notices', [$plugin, 'renderAdminNotices']);
        // The admin screens (WP-admin's part) register themselves through this class.
        if (is_admin() && class_exists(Admin\Admin::class)) {
            Admin\Admin::register($plugin);
        }
    }

    public function settings(): Settings
    {
        return $this->settings ??= new Settings(fn (array $policy): ?string => $this->policyProblem($policy));
    }

    public function client(): ClientService
    {
        return $this->client ??= new ClientService($this);
    }

    public function server(): ServerService
    {
        return $this->server ??= new ServerService($this);
    }

    public function log(): LogRepository
    {
        return $this->log ??= new LogRepository();
    }

    public function outbox(): Outbox
    {
        return $this->outbox ??= new Outbox();
    }

    /**
     * The component runtime for this process (the bridge loaded through FFI).
     *
     * @throws BridgeException with a message that says what to change
     */
    public function runtime(): Runtime
    {
        if ($this->runtime !== null) {
            return $this->runtime;
        }
        $problem = $this->ffiProblem();
        if ($problem !== null) {
            throw new BridgeException($problem);
        }
        $files = $this->nativeFiles();
        $options = array_filter([
            'library' => $files['library'],
            'wasm' => $files['wasm'],
            'header' => $files['header'],
        ]);
        $cache = $this->cacheStatus();
        $options['cache_dir'] = $cache['usable'] ? $cache['dir'] : $this->privateCacheDir();
        return $this->runtime = new Runtime($options);
    }

    /** Null when this PHP can load the bridge; else what to change, for people. */
    public function ffiProblem(): ?string
    {
        try {
            Runtime::checkFfiAvailable();
            return null;
        } catch (BridgeException $e) {
            if (!extension_loaded('ffi')) {
                return 'PHP\'s FFI extension is not loaded (' . $e->getMessage() . ')';
            }
            return sprintf(
                'SCIM provisioning cannot load its native bridge under this PHP (%s, ffi.enable=%s). '
                . 'For Apache mod_php add `php_admin_value ffi.enable 1` to the site\'s <VirtualHost> '
                . '(or `ffi.enable=true` in php.ini); for PHP-FPM add `php_admin_value[ffi.enable] = true` to the '
                . 'pool, or preload the bridge (opcache.preload). Until then changes are queued and delivered by '
                . 'bin/worker run from the system\'s cron (the PHP CLI allows FFI by default).',
                PHP_SAPI,
                (string) ini_get('ffi.enable'),
            );
        }
    }

    /** @return array{library: ?string, wasm: ?string, header: ?string} null: the library's default */
    public function nativeFiles(): array
    {
        $native = $this->pluginDir . '/native';
        $pick = static function (string $file, string $constant, string $env) use ($native): ?string {
            if (is_file($native . '/' . $file)) {
                return $native . '/' . $file;
            }
            if (defined($constant) && is_string(constant($constant)) && constant($constant) !== '') {
                return (string) constant($constant);
            }
            $value = getenv($env);
            return is_string($value) && $value !== '' ? $value : null;
        };
        return [
            'library' => $pick('libscim_bridge.so', 'SCIM_PROVISIONER_BRIDGE_LIB', 'SCIM_BRIDGE_LIB'),
            'wasm' => $pick('scim_provisioner.wasm', 'SCIM_PROVISIONER_WASM', 'SCIM_PROVISIONER_WASM'),
            'header' => is_file($native . '/scim_bridge.h') ? $native . '/scim_bridge.h' : null,
        ];
    }

    /**
     * The precompiled-component cache, wp-content/cache/scim-provisioner/ (0700, owned by
     * the PHP process's user). A directory with another owner, or writable by group or
     * others, is not used: a .cwasm is native code the bridge maps and runs.
     *
     * @return array{dir: string, usable: bool, problem: ?string}
     */
    public function cacheStatus(): array
    {
        $dir = (defined('WP_CONTENT_DIR') ? WP_CONTENT_DIR : ABSPATH . 'wp-content') . '/cache/scim-provisioner';
        if (!is_dir($dir)) {
            $parent = dirname($dir);
            if (!is_dir($parent)) {
                @mkdir($parent, 0o755, true);
            }
            if (!@mkdir($dir, 0o700) && !is_dir($dir)) {
                $problem = "cannot create {$dir}: the component is compiled on every request (slower)";
                return ['dir' => $dir, 'usable' => false, 'problem' => $problem];
            }
            @chmod($dir, 0o700);
        }
        clearstatcache(true, $dir);
        $owner = @fileowner($dir);
        $perms = @fileperms($dir);
        $me = function_exists('posix_geteuid') ? posix_geteuid() : $owner;
        if ($owner !== $me) {
            $problem = "{$dir} belongs to another user: it must belong to the web server's user (mode 0700); "
                . 'the component is compiled on every request until then';
            return ['dir' => $dir, 'usable' => false, 'problem' => $problem];
        }
        if ($perms === false || ($perms & 0o022) !== 0) {
            $problem = "{$dir} is writable by group or others: chmod 0700 it; "
                . 'the component is compiled on every request until then';
            return ['dir' => $dir, 'usable' => false, 'problem' => $problem];
        }
        return ['dir' => $dir, 'usable' => true, 'problem' => null];
    }

    /**
     * Admin notices for FFI and the cache, shown to administrators only.
     *
     * @return list<array{type: string, message: string}>
     */
    public function notices(): array
    {
        $notices = [];
        if (($ffi = $this->ffiProblem()) !== null) {
            $notices[] = ['type' => 'warning', 'message' => $ffi];
        } else {
            $cache = $this->cacheStatus();
            if ($cache['problem'] !== null) {
                $notices[] = ['type' => 'warning', 'message' => 'SCIM provisioning: ' . $cache['problem']];
            }
        }
        return $notices;
    }

    /** @internal the admin_notices hook */
    public function renderAdminNotices(): void
    {
        if (!current_user_can('manage_options')) {
            return;
        }
        foreach ($this->notices() as $notice) {
            printf(
                '<div class="notice notice-%s"><p>%s</p></div>',
                esc_attr($notice['type']),
                esc_html($notice['message']),
            );
        }
    }

    /** Opens a connector on a policy with a placeholder origin (nothing is sent) to have the component check it. */
    private function policyProblem(array $policy): ?string
    {
        try {
            Connector::open($this->runtime(), ['base_url' => 'https://offline.invalid/scim/v2', 'policy' => $policy]);
            return null;
        } catch (ProvisioningException $e) {
            return $e->getMessage();
        } catch (BridgeException $e) {
            // Cannot check here (no FFI under this SAPI): the JSON is kept; the component checks it when it opens.
            return null;
        }
    }

    /** A cache directory of this process's own, removed at exit, when the shared one cannot be used. */
    private function privateCacheDir(): string
    {
        if ($this->privateCacheDir === null) {
            $dir = rtrim(sys_get_temp_dir(), '/') . '/scim-provisioner-' . bin2hex(random_bytes(8));
            if (!@mkdir($dir, 0o700)) {
                throw new BridgeException("cannot create a private cache directory {$dir}");
            }
            $this->privateCacheDir = $dir;
            register_shutdown_function(static function () use ($dir): void {
                foreach (glob($dir . '/*') ?: [] as $file) {
                    @unlink($file);
                }
                @rmdir($dir);
            });
        }
        return $this->privateCacheDir;
    }
}
