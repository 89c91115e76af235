<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

use ScimSamples\PhpServer;

/**
 * A throwaway MariaDB or PostgreSQL of the test run's own: a fresh data directory in a temp
 * dir owned by the database's system user (`mysql`, `postgres`: the servers refuse to run
 * as root, and the tests run as root in CI), the server on a free loopback port, ready when
 * a connection succeeds (polled, bounded), stopped and its directory removed at the end of
 * the run. {@see stop()} and {@see start()} keep the data directory and the port.
 *
 * Each test asks for a database of its own ({@see createDatabase()}), reached over TCP as a
 * user with a password, as a site would.
 */
final class DatabaseServer
{
    private const READY_SECONDS = 120.0;

    /** @var array<string, self> */
    private static array $servers = [];

    /** @var resource|null */
    private $process = null;
    public readonly int $port;
    public readonly string $password;
    private readonly string $dir;
    private readonly string $logFile;

    public static function get(string $kind): self
    {
        if (self::$servers === []) {
            register_shutdown_function(self::stopAll(...));
        }
        return self::$servers[$kind] ??= new self($kind);
    }

    /**
     * A second server of $kind with TLS on, serving {@see TestCertificates}' server
     * certificate (plain connections are still accepted unless a user is made to require
     * TLS, {@see requireTlsFor()}).
     */
    public static function getTls(string $kind): self
    {
        if (self::$servers === []) {
            register_shutdown_function(self::stopAll(...));
        }
        return self::$servers["{$kind}-tls"] ??= new self($kind, TestCertificates::get());
    }

    public static function stopAll(): void
    {
        foreach (self::$servers as $server) {
            $server->stop();
            $server->remove();
        }
        self::$servers = [];
    }

    /** Whether this machine has the server binaries and PHP's PDO driver (the tests are skipped without them). */
    public static function available(string $kind): bool
    {
        if (!extension_loaded($kind === 'mariadb' ? 'pdo_mysql' : 'pdo_pgsql')) {
            return false;
        }
        return $kind === 'mariadb'
            ? is_executable('/usr/sbin/mariadbd') || trim((string) shell_exec('command -v mariadbd')) !== ''
            : self::pgBin('initdb') !== null;
    }

    /** @var array{string, string}|null the server's certificate and key, when it serves TLS */
    private readonly ?array $tls;

    private function __construct(public readonly string $kind, ?TestCertificates $certs = null)
    {
        if (!in_array($kind, ['mariadb', 'postgres'], true)) {
            throw new \LogicException("unknown database server {$kind}");
        }
        $this->password = bin2hex(random_bytes(12));
        $this->port = PhpServer::freePort();
        $this->dir = sys_get_temp_dir() . "/scim-php-{$kind}-" . getmypid() . '-' . bin2hex(random_bytes(4));
        mkdir($this->dir, 0o700);
        $this->logFile = Peers::logDir() . "/{$kind}-" . getmypid() . '.log';
        $this->chownToServerUser($this->dir);
        $this->tls = $certs?->install($this->dir);
        foreach ($this->tls ?? [] as $file) {
            $this->chownToServerUser($file);
        }
        $kind === 'mariadb' ? $this->initMariaDb() : $this->initPostgres();
        $this->start();
    }

    /** The PDO DSN of database $name over TCP. */
    public function dsn(string $name): string
    {
        return $this->kind === 'mariadb'
            ? "mysql:host=127.0.0.1;port={$this->port};dbname={$name};charset=utf8mb4"
            : "pgsql:host=127.0.0.1;port={$this->port};dbname={$name}";
    }

    public function user(): string
    {
        return $this->kind === 'mariadb' ? 'scim' : 'postgres';
    }

    /** A new, empty database; returns its name. */
    public function createDatabase(string $prefix = 'scim'): string
    {
        $name = $prefix . '_' . bin2hex(random_bytes(5));
        $admin = $this->pdo($this->kind === 'mariadb' ? 'mysql' : 'postgres');
        $admin->exec("CREATE DATABASE {$name}");
        return $name;
    }

    /**
     * A user of its own that may connect only over TLS (MariaDB: `REQUIRE SSL`;
     * PostgreSQL: a `hostssl` rule, the `host` rules refusing it), with this server's
     * password; returns its name.
     */
    public function requireTlsFor(string $database): string
    {
        $user = 'tls_' . bin2hex(random_bytes(4));
        $admin = $this->pdo($this->kind === 'mariadb' ? 'mysql' : 'postgres');
        if ($this->kind === 'mariadb') {
            $admin->exec("CREATE USER '{$user}'@'127.0.0.1' IDENTIFIED BY '{$this->password}' REQUIRE SSL");
            $admin->exec("GRANT ALL PRIVILEGES ON {$database}.* TO '{$user}'@'127.0.0.1'");
            return $user;
        }
        // The members of tls_only may connect over TLS only (pg_hba.conf, written at init).
        if ($admin->query("SELECT COUNT(*) FROM pg_roles WHERE rolname = 'tls_only'")->fetchColumn() == 0) {
            $admin->exec('CREATE ROLE tls_only NOLOGIN');
        }
        $admin->exec("CREATE ROLE {$user} LOGIN PASSWORD '{$this->password}' IN ROLE tls_only");
        $admin->exec("GRANT ALL PRIVILEGES ON DATABASE {$database} TO {$user}");
        $admin->exec("ALTER DATABASE {$database} OWNER TO {$user}");
        return $user;
    }

    public function pdo(string $database): \PDO
    {
        return new \PDO($this->dsn($database), $this->user(), $this->password, [
            \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
        ]);
    }

    public function start(): void
    {
        if ($this->running()) {
            return;
        }
        $log = fopen($this->logFile, 'ab');
        $argv = $this->kind === 'mariadb'
            ? ['mariadbd', '--no-defaults', "--datadir={$this->dir}/data", '--user=mysql', "--port={$this->port}",
                '--bind-address=127.0.0.1', "--socket={$this->dir}/mariadb.sock", "--pid-file={$this->dir}/mariadbd.pid",
                '--skip-name-resolve', '--innodb-buffer-pool-size=64M', '--max-connections=300',
                '--innodb-flush-log-at-trx-commit=2']
            : $this->asServerUser([self::pgBin('postgres'), '-D', "{$this->dir}/data", '-p', (string) $this->port,
                '-h', '127.0.0.1', '-k', $this->dir, '-c', 'max_connections=300', '-c', 'fsync=off',
                '-c', 'synchronous_commit=off']);
        if ($this->tls !== null) {
            [$cert, $key] = $this->tls;
            $argv = [...$argv, ...($this->kind === 'mariadb'
                ? ["--ssl-cert={$cert}", "--ssl-key={$key}"]
                : ['-c', 'ssl=on', '-c', "ssl_cert_file={$cert}", '-c', "ssl_key_file={$key}"])];
        }
        $this->process = proc_open($argv, [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log], $pipes);
        $deadline = microtime(true) + self::READY_SECONDS;
        while (true) {
            try {
                $this->pdo($this->kind === 'mariadb' ? 'mysql' : 'postgres')->query('SELECT 1');
                return;
            } catch (\PDOException $e) {
                if (!$this->running() || microtime(true) > $deadline) {
                    $tail = implode("\n", array_slice(file($this->logFile) ?: [], -30));
                    throw new \RuntimeException("{$this->kind} did not start ({$e->getMessage()}):\n{$tail}");
                }
                usleep(100_000);
            }
        }
    }

    /**
     * A clean shutdown (SIGTERM), waited for. $dropClients: PostgreSQL's fast shutdown
     * (SIGINT), which ends open sessions as MariaDB's SIGTERM does; SIGTERM would wait for
     * every client to disconnect.
     */
    public function stop(bool $dropClients = false): void
    {
        if ($this->process === null) {
            return;
        }
        $status = proc_get_status($this->process);
        if ($status['running']) {
            $signal = $dropClients && $this->kind === 'postgres' ? SIGINT : SIGTERM;
            // The server itself, not runuser: signal its process group's leader and children.
            posix_kill($status['pid'], $signal);
            exec('pkill -' . ($signal === SIGINT ? 'INT' : 'TERM') . ' -P ' . (int) $status['pid']);
            $deadline = microtime(true) + 60;
            while (proc_get_status($this->process)['running'] && microtime(true) < $deadline) {
                usleep(50_000);
            }
        }
        proc_close($this->process);
        $this->process = null;
    }

    /**
     * CPU seconds the server has used so far (user + system): its process tree's, the exited
     * children (PostgreSQL's ended backends) included, read from /proc. For benchmarks.
     */
    public function cpuSeconds(): float
    {
        if ($this->process === null) {
            return 0.0;
        }
        $tick = 100.0; // USER_HZ on Linux
        $total = 0.0;
        $todo = [(int) proc_get_status($this->process)['pid']];
        while ($todo !== []) {
            $pid = array_pop($todo);
            $stat = @file_get_contents("/proc/{$pid}/stat");
            if ($stat === false) {
                continue;
            }
            // After the command's closing parenthesis: fields 3… (utime is field 14).
            $f = explode(' ', substr($stat, strrpos($stat, ')') + 2));
            $total += ((int) $f[11] + (int) $f[12] + (int) $f[13] + (int) $f[14]) / $tick;
            foreach (explode(' ', trim((string) @file_get_contents("/proc/{$pid}/task/{$pid}/children"))) as $child) {
                if ($child !== '') {
                    $todo[] = (int) $child;
                }
            }
        }
        return $total;
    }

    public function running(): bool
    {
        return $this->process !== null && proc_get_status($this->process)['running'];
    }

    private function remove(): void
    {
        if (is_dir($this->dir) && str_starts_with($this->dir, sys_get_temp_dir() . '/scim-php-')) {
            exec('rm -rf ' . escapeshellarg($this->dir));
        }
    }

    private function initMariaDb(): void
    {
        $out = [];
        exec(implode(' ', array_map('escapeshellarg', ['mariadb-install-db', '--no-defaults', "--datadir={$this->dir}/data",
            '--user=mysql', '--auth-root-authentication-method=normal', '--skip-test-db'])) . ' 2>&1', $out, $rc);
        if ($rc !== 0) {
            throw new \RuntimeException("mariadb-install-db failed:\n" . implode("\n", $out));
        }
        // The test user, created at first start over the socket as root (bootstrap file).
        $init = "{$this->dir}/init.sql";
        file_put_contents($init, "FLUSH PRIVILEGES;\n" . "CREATE USER 'scim'@'127.0.0.1' IDENTIFIED BY '{$this->password}';\n"
            . "GRANT ALL PRIVILEGES ON *.* TO 'scim'@'127.0.0.1' WITH GRANT OPTION;\n");
        $this->chownToServerUser($init);
        exec(implode(' ', array_map('escapeshellarg', ['mariadbd', '--no-defaults', '--bootstrap',
            "--datadir={$this->dir}/data", '--user=mysql', '--skip-networking'])) . ' < ' . escapeshellarg($init) . ' 2>&1', $out, $rc);
        unlink($init);
        if ($rc !== 0) {
            throw new \RuntimeException("mariadbd --bootstrap failed:\n" . implode("\n", $out));
        }
    }

    private function initPostgres(): void
    {
        $pw = "{$this->dir}/pw";
        file_put_contents($pw, $this->password . "\n");
        $this->chownToServerUser($pw);
        $argv = $this->asServerUser([self::pgBin('initdb'), '-D', "{$this->dir}/data", '-U', 'postgres',
            "--pwfile={$pw}", '--auth-local=scram-sha-256', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
        exec(implode(' ', array_map('escapeshellarg', $argv)) . ' 2>&1', $out, $rc);
        unlink($pw);
        if ($rc !== 0) {
            throw new \RuntimeException("initdb failed:\n" . implode("\n", $out));
        }
        if ($this->tls !== null) {
            // requireTlsFor()'s users (members of tls_only): TLS or nothing. First match wins.
            $hba = "{$this->dir}/data/pg_hba.conf";
            file_put_contents($hba, "hostssl all +tls_only 127.0.0.1/32 scram-sha-256\n"
                . "host all +tls_only 127.0.0.1/32 reject\n" . file_get_contents($hba));
        }
    }

    /** @param list<string> $argv */
    private function asServerUser(array $argv): array
    {
        return posix_geteuid() === 0 ? ['runuser', '-u', 'postgres', '--', ...$argv] : $argv;
    }

    private function chownToServerUser(string $path): void
    {
        if (posix_geteuid() === 0) {
            $user = $this->kind === 'mariadb' ? 'mysql' : 'postgres';
            chown($path, $user);
            chgrp($path, $user);
        }
    }

    private static function pgBin(string $name): ?string
    {
        $found = glob("/usr/lib/postgresql/*/bin/{$name}") ?: [];
        rsort($found, SORT_NATURAL);
        return $found[0] ?? null;
    }
}
