<?php

declare(strict_types=1);

namespace ScimSamples;

/**
 * Starts the Joomla-like site under `php -S` on a free 127.0.0.1 port, waits until it
 * answers (polling, bounded), and stops it. Used by seed-demo and the tests.
 */
final class PhpServer
{
    /** @var resource|null */
    private $process;
    public int $port = 0;
    public string $baseUrl = "";
    public readonly string $logFile;

    /**
     * @param string $router the router script
     * @param array<string, string> $env extra environment
     * @param array<string, string> $ini extra ini settings (-d)
     */
    public function __construct(string $router, array $env, string $logFile, string $basePath = '/scim/v2', float $readySeconds = 60.0, array $ini = [], string $readyPath = '/ServiceProviderConfig', int $port = 0)
    {
        $iniArgs = [];
        foreach ($ini as $k => $v) {
            array_push($iniArgs, '-d', "{$k}={$v}");
        }
        $this->logFile = $logFile;
        $lastError = '';
        for ($attempt = 0; $attempt < 3; $attempt++) {
            $port = $port > 0 && $attempt === 0 ? $port : self::freePort();
            $log = fopen($logFile, 'ab');
            $process = proc_open(
                [PHP_BINARY, '-d', 'display_errors=stderr', ...$iniArgs, '-S', "127.0.0.1:{$port}", $router],
                [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log],
                $pipes,
                dirname($router),
                array_merge(self::baseEnv(), $env),
            );
            fclose($log);
            if (!is_resource($process)) {
                throw new \RuntimeException('cannot start php -S');
            }
            $this->process = $process;
            $this->port = $port;
            $this->baseUrl = "http://127.0.0.1:{$port}{$basePath}";
            $deadline = microtime(true) + $readySeconds;
            while (microtime(true) < $deadline) {
                if (!proc_get_status($process)['running']) {
                    $lastError = "php -S exited at start (port {$port} taken?); log {$logFile}:\n" . self::tail($logFile);
                    proc_close($process);
                    $this->process = null;
                    continue 2;
                }
                [$status] = self::get("{$this->baseUrl}{$readyPath}", null, 2.0);
                if ($status === 200) {
                    return;
                }
                usleep(20_000);
            }
            $this->stop();
            throw new \RuntimeException("php -S did not answer within {$readySeconds} s; log {$logFile}:\n" . self::tail($logFile));
        }
        throw new \RuntimeException($lastError);
    }

    /**
     * The Joomla-like site under php -S, set up as a production FPM pool would be: PHP's
     * default ffi.enable=preload allows FFI outside the CLI (php -S is the cli-server SAPI)
     * only for preloaded code, so the bridge's declarations come from ffi.preload (a header
     * bin/ffi-preload-header writes into $dir) and the library's classes from
     * opcache.preload (lib/preload.php).
     *
     * @param array<string, string> $env SCIM_TOKEN, JOOMLA_SITE_DB, …
     */
    public static function joomla(string $dir, array $env, float $readySeconds = 60.0): self
    {
        return self::preloaded(dirname(__DIR__) . '/joomla-site/router.php', $dir, $env, "{$dir}/joomla-site.log", '/scim/v2', '/ServiceProviderConfig', $readySeconds);
    }

    /**
     * Any router under php -S with the FPM-style FFI preload settings (see joomla()).
     *
     * @param array<string, string> $env
     */
    public static function preloaded(string $router, string $dir, array $env, string $logFile, string $basePath, string $readyPath, float $readySeconds = 60.0, int $port = 0): self
    {
        $lib = dirname(__DIR__, 2) . '/lib';
        $header = "{$dir}/scim_bridge.preload.h";
        exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg("{$lib}/bin/ffi-preload-header") . ' ' . escapeshellarg($header) . ' 2>&1', $out, $status);
        if ($status !== 0) {
            throw new \RuntimeException('cannot write the FFI preload header: ' . implode("\n", $out));
        }
        $ini = [
            'ffi.enable' => 'preload',
            'ffi.preload' => $header,
            'opcache.enable' => '1',
            'opcache.enable_cli' => '1',
            'opcache.preload' => "{$lib}/preload.php",
        ];
        if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
            $ini['opcache.preload_user'] = 'root';
        }
        return new self($router, $env, $logFile, $basePath, $readySeconds, $ini, $readyPath, $port);
    }

    public function stop(): void
    {
        if ($this->process !== null) {
            proc_terminate($this->process, SIGTERM);
            $deadline = microtime(true) + 5;
            while (proc_get_status($this->process)['running'] && microtime(true) < $deadline) {
                usleep(10_000);
            }
            if (proc_get_status($this->process)['running']) {
                proc_terminate($this->process, SIGKILL);
            }
            proc_close($this->process);
            $this->process = null;
        }
    }

    public function __destruct()
    {
        $this->stop();
    }

    /** A port nobody listens on right now. */
    public static function freePort(): int
    {
        $socket = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($socket === false) {
            throw new \RuntimeException("cannot find a free port: {$error}");
        }
        $name = (string) stream_socket_get_name($socket, false);
        fclose($socket);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    /**
     * A plain HTTP request with file_get_contents: [status, body, headers].
     *
     * @return array{0: int, 1: string, 2: list<string>}
     */
    public static function request(string $method, string $url, ?string $token, ?string $body = null, float $timeout = 30.0): array
    {
        $headers = ['Accept: application/scim+json, application/json'];
        if ($token !== null) {
            $headers[] = "Authorization: Bearer {$token}";
        }
        if ($body !== null) {
            $headers[] = 'Content-Type: application/scim+json';
        }
        $context = stream_context_create(['http' => [
            'method' => $method,
            'header' => implode("\r\n", $headers),
            'content' => $body ?? '',
            'ignore_errors' => true,
            'timeout' => $timeout,
            'follow_location' => 0,
            'proxy' => '',
        ]]);
        $text = @file_get_contents($url, false, $context);
        $responseHeaders = $http_response_header ?? [];
        if ($text === false && $responseHeaders === []) {
            return [0, '', []];
        }
        preg_match('#^HTTP/\S+\s+(\d+)#', $responseHeaders[0] ?? '', $m);
        return [(int) ($m[1] ?? 0), (string) $text, $responseHeaders];
    }

    /** @return array{0: int, 1: string, 2: list<string>} */
    public static function get(string $url, ?string $token, float $timeout = 30.0): array
    {
        return self::request('GET', $url, $token, null, $timeout);
    }

    /** @return array<string, string> the environment without proxies (everything here is 127.0.0.1) */
    public static function baseEnv(): array
    {
        $env = getenv();
        foreach (['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'] as $k) {
            unset($env[$k]);
        }
        return $env;
    }

    public static function tail(string $file, int $bytes = 3000): string
    {
        $text = @file_get_contents($file);
        return $text === false ? '' : substr($text, -$bytes);
    }
}
