<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimSamples\PhpServer;

/**
 * A real third-party SCIM server for the tests, on 127.0.0.1 with a bearer token:
 * scim2-server (Python, base /v2) or the SCIMMY app (Node, base /scim/v2). Started by
 * {@see Peers}, ready when GET /ServiceProviderConfig answers 200 (polled, bounded), killed
 * at the end of the run. Both keep their data in memory.
 *
 * Or, named `http.server`, not a SCIM server at all: Python's http.server (the peers venv's
 * Python) over an empty temporary directory, answering every GET with an HTML 404 and
 * POST/PUT/PATCH/DELETE with an HTML 501; base http://127.0.0.1:P (no path), ready once it
 * accepts connections.
 */
final class Peer
{
    private const READY_SECONDS = 30.0;

    /** @var resource|null */
    private $process;
    public string $baseUrl = '';
    public int $port = 0;
    public readonly string $token;
    public readonly string $logFile;

    /**
     * @param list<string> $switches the quirky server's switches (name 'quirky' only)
     */
    public function __construct(public readonly string $name, private readonly array $switches = [])
    {
        $this->token = bin2hex(random_bytes(16));
        $this->logFile = Peers::logDir() . "/{$name}-" . getmypid() . '.log';
        $lastError = '';
        for ($attempt = 0; $attempt < 3; $attempt++) {
            try {
                $this->spawn();
                return;
            } catch (\RuntimeException $e) {
                $lastError = $e->getMessage();
                $this->stop();
            }
        }
        throw new \RuntimeException("{$name} did not start: {$lastError}");
    }

    private function spawn(): void
    {
        $root = dirname(__DIR__, 4);
        $env = PhpServer::baseEnv();
        $log = fopen($this->logFile, 'ab');
        if ($this->name === 'http.server') {
            $python = "{$root}/target/peers/venv/bin/python";
            if (!is_file($python)) {
                throw new \LogicException("{$python} is missing: run scripts/install-peers");
            }
            $this->port = PhpServer::freePort();
            $this->baseUrl = "http://127.0.0.1:{$this->port}";
            $this->process = proc_open(
                [$python, '-m', 'http.server', '--bind', '127.0.0.1', (string) $this->port, '--directory', Peers::tempDir('html-peer')],
                [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log],
                $pipes,
                null,
                $env,
            );
        } elseif ($this->name === 'quirky') {
            // Our quirky SCIM server (tests/peers/quirky) with its switches, data in memory.
            $python = "{$root}/target/peers/venv/bin/python";
            if (!is_file($python)) {
                throw new \LogicException("{$python} is missing: run scripts/install-peers");
            }
            $this->port = PhpServer::freePort();
            $this->baseUrl = "http://127.0.0.1:{$this->port}/v2";
            $this->process = proc_open(
                [$python, "{$root}/tests/peers/quirky/server.py", '--port', (string) $this->port, '--token', $this->token, ...$this->switches],
                [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log],
                $pipes,
                null,
                $env,
            );
        } elseif ($this->name === 'scim2-server') {
            $bin = "{$root}/target/peers/venv/bin/scim2-server";
            if (!is_file($bin)) {
                throw new \LogicException("{$bin} is missing: run scripts/install-peers");
            }
            $this->port = PhpServer::freePort();
            $this->baseUrl = "http://127.0.0.1:{$this->port}/v2";
            $this->process = proc_open(
                [$bin, '--hostname', '127.0.0.1', '--port', (string) $this->port, '--bearer-token', $this->token],
                [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log],
                $pipes,
                null,
                $env,
            );
        } else {
            $app = "{$root}/tests/peers/scimmy";
            if (!is_dir("{$app}/node_modules")) {
                throw new \LogicException("{$app}/node_modules is missing: run scripts/install-peers");
            }
            $env['SCIM_TOKEN'] = $this->token;
            $env['PORT'] = '0';
            $this->process = proc_open(
                [getenv('NODE') ?: 'node', 'server.js'],
                [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => $log],
                $pipes,
                $app,
                $env,
            );
            // It prints `listening <port>` once it accepts connections.
            $deadline = microtime(true) + self::READY_SECONDS;
            $line = '';
            stream_set_blocking($pipes[1], false);
            while (!str_contains($line, "\n") && microtime(true) < $deadline) {
                $r = [$pipes[1]];
                $w = $e = null;
                if (@stream_select($r, $w, $e, 0, 100_000) > 0) {
                    $chunk = fread($pipes[1], 256);
                    if ($chunk === '' || $chunk === false) {
                        if (feof($pipes[1])) {
                            break;
                        }
                    } else {
                        $line .= $chunk;
                    }
                }
            }
            if (!preg_match('/listening (\d+)/', $line, $m)) {
                throw new \RuntimeException("the SCIMMY app did not say it listens; log:\n" . PhpServer::tail($this->logFile));
            }
            $this->port = (int) $m[1];
            $this->baseUrl = "http://127.0.0.1:{$this->port}/scim/v2";
        }
        fclose($log);
        if (!is_resource($this->process)) {
            throw new \RuntimeException("cannot start {$this->name}");
        }
        $deadline = microtime(true) + self::READY_SECONDS;
        while (microtime(true) < $deadline) {
            if (!proc_get_status($this->process)['running']) {
                throw new \RuntimeException("{$this->name} exited at start; log:\n" . PhpServer::tail($this->logFile));
            }
            if ($this->name === 'http.server') {
                $socket = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $errno, $error, 2.0);
                if ($socket !== false) {
                    fclose($socket);
                    return;
                }
            } else {
                [$status] = PhpServer::get("{$this->baseUrl}/ServiceProviderConfig", $this->token, 2.0);
                if ($status === 200) {
                    return;
                }
            }
            usleep(50_000);
        }
        throw new \RuntimeException("{$this->name} did not answer within " . self::READY_SECONDS . " s; log:\n" . PhpServer::tail($this->logFile));
    }

    public function stop(): void
    {
        if (is_resource($this->process)) {
            proc_terminate($this->process, SIGKILL);
            proc_close($this->process);
        }
        $this->process = null;
    }

    /**
     * A plain HTTP request to the peer with its token: [status, decoded JSON body].
     *
     * @param array<string, mixed>|null $body
     * @return array{0: int, 1: mixed}
     */
    public function json(string $method, string $path, ?array $body = null): array
    {
        [$status, $text] = PhpServer::request($method, $this->baseUrl . $path, $this->token, $body === null ? null : json_encode($body));
        return [$status, $text === '' ? null : json_decode($text, true)];
    }
}
