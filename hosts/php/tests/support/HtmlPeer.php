<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimSamples\PhpServer;

/**
 * Not a SCIM server: Python's http.server (the peers venv's Python, which also runs
 * scim2-server) over an empty temporary directory, on 127.0.0.1. It answers every GET with an
 * HTML 404 and POST/PUT/PATCH/DELETE with an HTML 501. Base http://127.0.0.1:P (no path);
 * ready once it accepts connections (polled, bounded); killed by {@see stop()}.
 */
final class HtmlPeer
{
    private const READY_SECONDS = 30.0;

    /** @var resource|null */
    private $process;
    public string $baseUrl = '';
    public int $port = 0;
    public readonly string $logFile;
    private readonly string $root;

    public function __construct()
    {
        $this->root = Peers::tempDir('html-peer');
        $this->logFile = Peers::logDir() . '/html-' . getmypid() . '.log';
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
        throw new \RuntimeException("http.server did not start: {$lastError}");
    }

    private function spawn(): void
    {
        $python = dirname(__DIR__, 4) . '/target/peers/venv/bin/python';
        if (!is_file($python)) {
            throw new \LogicException("{$python} is missing: run scripts/install-peers");
        }
        $this->port = PhpServer::freePort();
        $this->baseUrl = "http://127.0.0.1:{$this->port}";
        $log = fopen($this->logFile, 'ab');
        $this->process = proc_open(
            [$python, '-m', 'http.server', '--bind', '127.0.0.1', (string) $this->port, '--directory', $this->root],
            [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log],
            $pipes,
            null,
            PhpServer::baseEnv(),
        );
        fclose($log);
        if (!is_resource($this->process)) {
            throw new \RuntimeException('cannot start http.server');
        }
        $deadline = microtime(true) + self::READY_SECONDS;
        while (microtime(true) < $deadline) {
            if (!proc_get_status($this->process)['running']) {
                throw new \RuntimeException("http.server exited at start; log:\n" . PhpServer::tail($this->logFile));
            }
            $socket = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $errno, $error, 2.0);
            if ($socket !== false) {
                fclose($socket);
                return;
            }
            usleep(50_000);
        }
        throw new \RuntimeException('http.server did not accept connections within ' . self::READY_SECONDS . " s; log:\n" . PhpServer::tail($this->logFile));
    }

    public function stop(): void
    {
        if (is_resource($this->process)) {
            proc_terminate($this->process, SIGKILL);
            proc_close($this->process);
        }
        $this->process = null;
    }
}
