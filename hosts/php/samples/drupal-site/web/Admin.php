<?php

declare(strict_types=1);

namespace ScimSamples\DrupalSite\Web;

use ScimProvisioner\Logger;
use ScimProvisioner\LoggerTrait;
use ScimProvisioner\PrometheusText;
use ScimProvisioner\Runtime;
use ScimSamples\DrupalSite\Site;

/**
 * The admin UI's state: its own settings table (beside the site's tables, in the same SQLite
 * file), the admin account, and the Site built from the saved settings.
 *
 * Secrets: the SCIM bearer token and the OAuth 2.0 client secret live only in the settings
 * table; nothing here returns them to a template, and every message shown is passed through
 * redact().
 */
final class Admin
{
    public const DEFAULT_MAPPING = [
        ['target' => 'userName', 'source' => 'name', 'required' => true],
        ['target' => 'emails[type eq "work"].value', 'source' => 'mail'],
        ['target' => 'name.givenName', 'source' => 'field_first_name'],
        ['target' => 'name.familyName', 'source' => 'field_last_name'],
        ['target' => 'name.formatted', 'template' => '{field_first_name} {field_last_name}'],
        ['target' => 'displayName', 'template' => '{field_first_name} {field_last_name}'],
        ['target' => 'active', 'source' => '@active'],
        ['target' => 'externalId', 'source' => '@id'],
    ];

    public const DEFAULTS = [
        'base_url' => '',
        'token' => '',
        // 'bearer' (the token above) or 'oauth2' (client credentials: the component gets
        // the token from token_url with client_id and client_secret).
        'auth' => 'bearer',
        'token_url' => '',
        'client_id' => '',
        'client_secret' => '',
        'scope' => '',
        'audience' => '',
        'client_auth' => 'client_secret_basic',
        'timeout' => 30000,
        'allow_insecure_http' => false,
        'operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => false],
        'deprovision' => 'deactivate',
        'scope_active' => false,
        'automatic' => true,
        'schedule' => 'manual',
        'threshold' => '10%',
        'mapping' => self::DEFAULT_MAPPING,
    ];

    public readonly \PDO $db;
    private ?Site $site = null;
    private ?Runtime $runtime = null;

    public readonly MemoryLogger $logger;

    public function __construct(public readonly string $dir)
    {
        $this->logger = new MemoryLogger();
        $this->db = new \PDO('sqlite:' . $this->database());
        $this->db->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        $this->db->exec('PRAGMA busy_timeout = 10000');
        $this->db->exec('PRAGMA journal_mode = WAL');
        $this->db->exec('CREATE TABLE IF NOT EXISTS admin_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
        $this->db->exec('CREATE TABLE IF NOT EXISTS admin_account (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL)');
        $this->db->exec('CREATE TABLE IF NOT EXISTS admin_login_failures (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, blocked_until INTEGER NOT NULL)');
    }

    /** Failed logins allowed before each further one makes the next wait (5, 10, 20 … s, at most 15 min). */
    private const FREE_FAILURES = 3;

    /** @return list<string> the throttle keys of one attempt: per client and per account */
    private static function throttleKeys(string $client, string $name): array
    {
        return ['client:' . $client, 'account:' . mb_strtolower($name)];
    }

    /** Seconds to wait before this client or account may try again (0: it may now). */
    public function loginThrottle(string $client, string $name): int
    {
        $stmt = $this->db->prepare('SELECT MAX(blocked_until) FROM admin_login_failures WHERE key IN (?, ?)');
        $stmt->execute(self::throttleKeys($client, $name));
        return max(0, (int) $stmt->fetchColumn() - time());
    }

    public function loginFailed(string $client, string $name): void
    {
        $read = $this->db->prepare('SELECT failures FROM admin_login_failures WHERE key = ?');
        $write = $this->db->prepare('INSERT INTO admin_login_failures (key, failures, blocked_until) VALUES (?, ?, ?)
            ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, blocked_until = excluded.blocked_until');
        foreach (self::throttleKeys($client, $name) as $key) {
            $read->execute([$key]);
            $failures = (int) $read->fetchColumn() + 1;
            $delay = $failures < self::FREE_FAILURES ? 0 : min(900, 5 * 2 ** ($failures - self::FREE_FAILURES));
            $write->execute([$key, $failures, time() + $delay]);
        }
    }

    public function loginSucceeded(string $client, string $name): void
    {
        $this->db->prepare('DELETE FROM admin_login_failures WHERE key IN (?, ?)')->execute(self::throttleKeys($client, $name));
    }

    public function database(): string
    {
        return $this->dir . '/site.db';
    }

    /** Creates the one admin account on first run; returns its password then (null afterwards). */
    public function ensureAdmin(): ?string
    {
        if ($this->db->query('SELECT COUNT(*) FROM admin_account')->fetchColumn() > 0) {
            return null;
        }
        $password = rtrim(strtr(base64_encode(random_bytes(15)), '+/', 'xy'), '=');
        $this->db->prepare('INSERT INTO admin_account (name, password_hash) VALUES (?, ?)')->execute(['admin', password_hash($password, PASSWORD_DEFAULT)]);
        return $password;
    }

    public function checkLogin(string $name, string $password): bool
    {
        $stmt = $this->db->prepare('SELECT password_hash FROM admin_account WHERE name = ?');
        $stmt->execute([$name]);
        $hash = $stmt->fetchColumn();
        // Verify against a dummy hash for an unknown name, so timing does not tell names apart.
        return password_verify($password, is_string($hash) ? $hash : '$2y$10$' . str_repeat('a', 53)) && is_string($hash);
    }

    /** @return array<string, mixed> the saved settings over the defaults */
    public function settings(): array
    {
        $settings = self::DEFAULTS;
        foreach ($this->db->query('SELECT key, value FROM admin_settings')->fetchAll(\PDO::FETCH_KEY_PAIR) as $k => $v) {
            $settings[$k] = json_decode((string) $v, true);
        }
        return $settings;
    }

    /**
     * Saves settings. A base URL on another origin (scheme, host or port) than the saved one
     * clears the saved token unless $values brings a new one: a token is only ever sent to
     * the server it was entered for (issue 28). The same holds for the OAuth 2.0 client
     * secret and the token URL's origin.
     *
     * @param array<string, mixed> $values
     */
    public function save(array $values): void
    {
        if (isset($values['base_url']) && !array_key_exists('token', $values)) {
            $old = (string) ($this->settings()['base_url'] ?? '');
            if ($old !== '' && self::origin($old) !== self::origin((string) $values['base_url'])) {
                $values['token'] = '';
            }
        }
        if (isset($values['token_url']) && !array_key_exists('client_secret', $values)) {
            $old = (string) ($this->settings()['token_url'] ?? '');
            if ($old !== '' && self::origin($old) !== self::origin((string) $values['token_url'])) {
                $values['client_secret'] = '';
            }
        }
        $this->db->beginTransaction();
        $stmt = $this->db->prepare('INSERT INTO admin_settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
        foreach ($values as $k => $v) {
            $stmt->execute([$k, json_encode($v, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)]);
        }
        $this->db->commit();
        $this->site = null;
    }

    /**
     * The connector configuration from settings (overridden by $override, for validation).
     *
     * @param array<string, mixed> $override
     * @return array<string, mixed>
     */
    public function connectorConfig(array $override = []): array
    {
        $s = array_merge($this->settings(), $override);
        $policy = [
            'operations' => $s['operations'],
            'deprovision' => $s['deprovision'],
            'mapping' => $s['mapping'],
        ];
        if ($s['scope_active']) {
            $policy['scope'] = ['active' => true];
        }
        if (!empty($s['allow_insecure_http'])) {
            $policy['allow_insecure_http'] = true;
        }
        $config = [
            'base_url' => $s['base_url'] !== '' ? $s['base_url'] : 'http://127.0.0.1:9/not-configured',
            'timeout' => (int) $s['timeout'],
            'policy' => $policy,
        ];
        if (($s['auth'] ?? 'bearer') === 'oauth2') {
            // Client credentials: the id and secret go only to token_url (the component's rule).
            $config += ['auth' => 'oauth2', 'token_url' => (string) $s['token_url'], 'client_id' => (string) $s['client_id'],
                'client_secret' => (string) $s['client_secret'], 'client_auth' => (string) $s['client_auth']];
            foreach (['scope', 'audience'] as $key) {
                if ((string) $s[$key] !== '') {
                    $config[$key] = (string) $s[$key];
                }
            }
        } elseif ($s['token'] !== '') {
            $config['token'] = $s['token'];
        }
        return $config;
    }

    /** scheme://host:port of a URL (default ports filled in, case folded); '' when it has none. */
    public static function origin(string $url): string
    {
        $parts = parse_url($url);
        if (!is_array($parts) || !isset($parts['scheme'], $parts['host'])) {
            return '';
        }
        $scheme = strtolower($parts['scheme']);
        $port = $parts['port'] ?? ($scheme === 'https' ? 443 : ($scheme === 'http' ? 80 : 0));
        return $scheme . '://' . strtolower(rtrim($parts['host'], '.')) . ':' . $port;
    }

    /**
     * Whether a URL is plain http:// to a host other than loopback (127.0.0.0/8, ::1,
     * localhost): the component's rule, which refuses it unless `allow_insecure_http` is set.
     */
    public static function remotePlainHttp(string $url): bool
    {
        $parts = parse_url($url);
        if (!is_array($parts) || strtolower($parts['scheme'] ?? '') !== 'http') {
            return false;
        }
        $host = strtolower(rtrim(trim((string) ($parts['host'] ?? ''), '[]'), '.'));
        $loopback = $host === 'localhost' || $host === '::1' || $host === '0:0:0:0:0:0:0:1'
            || (bool) preg_match('/^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/', $host, $m) && max($m[1], $m[2], $m[3]) <= 255;
        return !$loopback;
    }

    public function configured(): bool
    {
        return $this->settings()['base_url'] !== '';
    }

    public function runtime(): Runtime
    {
        return $this->runtime ??= new Runtime(['cache_dir' => $this->dir . '/cache']);
    }

    public function site(): Site
    {
        if ($this->site === null) {
            $s = $this->settings();
            $this->site = new Site($this->runtime(), [
                'connector' => $this->connectorConfig(),
                'database' => $this->database(),
                'deprovision_threshold' => (string) $s['threshold'],
                'automatic' => (bool) $s['automatic'],
                'concurrency' => 2,
            ], $this->logger);
        }
        return $this->site;
    }

    /** Makes a new metrics token (the old one stops at once); returns it to show once. Only its SHA-256 is kept. */
    public function rotateMetricsToken(): string
    {
        $token = bin2hex(random_bytes(32));
        $this->save(['metrics_token_sha256' => PrometheusText::tokenHash($token)]);
        return $token;
    }

    public function hasMetricsToken(): bool
    {
        return (string) ($this->settings()['metrics_token_sha256'] ?? '') !== '';
    }

    /** Whether the Authorization header carries the metrics token (constant-time; not the SCIM token, not a cookie). */
    public function metricsAuthorized(?string $authorization): bool
    {
        return PrometheusText::verifyToken((string) ($this->settings()['metrics_token_sha256'] ?? ''), PrometheusText::bearer($authorization));
    }

    /** Removes the saved token and client secret from a message before it is shown or logged. */
    public function redact(string $message): string
    {
        $s = $this->settings();
        foreach ([(string) ($s['token'] ?? ''), (string) ($s['client_secret'] ?? '')] as $secret) {
            if ($secret !== '') {
                $message = str_replace($secret, '[redacted]', $message);
            }
        }
        return $message;
    }
}

/** Keeps the component's log lines of one request (info and up), e.g. the connection test's findings. */
final class MemoryLogger implements Logger
{
    use LoggerTrait;

    /** @var list<array{0: string, 1: string}> */
    public array $lines = [];

    /** @param array<string, mixed> $context */
    public function log(string $level, string|\Stringable $message, array $context = []): void
    {
        if ($level !== 'debug') {
            $this->lines[] = [$level, (string) $message];
        }
    }
}
