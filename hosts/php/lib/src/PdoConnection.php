<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * Opens a PDO connection to MariaDB/MySQL or PostgreSQL from a DSN that may ask for TLS with
 * the parameters the Rust host takes in its database URL (docs/configuration.md, "The
 * store"), with the same meaning: whenever TLS is on, the server's certificate is verified,
 * and a connection that asked for TLS never goes on in plain text.
 *
 * | PostgreSQL `sslmode` | MariaDB `ssl-mode` | checked |
 * |---|---|---|
 * | `disable` | absent, `DISABLED` | no TLS |
 * | `require`, `verify-full` | `REQUIRED`, `VERIFY_IDENTITY` (or `ssl=true`) | the chain and the host name |
 * | `verify-ca` | refused (below) | the chain only |
 * | `allow`, `prefer` | `PREFERRED` | refused: they fall back to no TLS |
 *
 * ```php
 * $pdo = PdoConnection::open(
 *     'pgsql:host=db.internal;dbname=scim;sslmode=verify-full;sslrootcert=/etc/scim/db-ca.pem', 'scim', $password);
 * $pdo = PdoConnection::open(
 *     'mysql:host=db.internal;dbname=scim;charset=utf8mb4;ssl-mode=VERIFY_IDENTITY;ssl-ca=/etc/scim/db-ca.pem',
 *     'scim', $password);
 * ```
 *
 * - **PostgreSQL** (pdo_pgsql hands the DSN to libpq, which does the TLS): `require` is
 *   sent as `verify-full` (libpq's own `require` checks nothing). The trusted CAs are the
 *   PEM file in `sslrootcert`; without one, or with `sslrootcert=system`, the system's CA
 *   bundle (OpenSSL's default file, `/etc/ssl/certs/ca-certificates.crt` on Debian).
 *   Without `sslmode`, libpq's default applies (`PGSSLMODE`, else `prefer`), as with a
 *   plain `new PDO()`.
 * - **MariaDB/MySQL** (pdo_mysql ignores TLS parameters in a DSN, so an `ssl-mode` in a DSN
 *   given straight to `new PDO()` is silently plain text): `ssl-mode`/`ssl_mode`/`sslmode`/
 *   `ssl` and `ssl-ca`/`ssl_ca` are taken out of the DSN and become
 *   `PDO::MYSQL_ATTR_SSL_CA` (the file, or the system's CA bundle) and
 *   `PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT = true`. PHP's driver (mysqlnd) then checks the
 *   chain and the DSN's host name; it cannot check the chain alone, so `VERIFY_CA` is
 *   refused rather than quietly checked as `VERIFY_IDENTITY`.
 * - **Never plain by accident.** After connecting with TLS asked for, the session itself is
 *   asked whether it is encrypted (`Ssl_cipher`; `pg_stat_ssl`), and a connection that is
 *   not is closed and refused.
 * - **Errors** ({@see DatabaseConnectionException}) say what failed and hold neither the
 *   password nor the DSN; the driver's exception is not chained (its trace would hold the
 *   constructor's arguments).
 *
 * The library's own stores take a ready PDO ({@see PdoDirectory}, {@see PdoOutbox},
 * {@see OutboxWorker}'s `$connect`), so this is how a site opens one for them.
 */
final class PdoConnection
{
    private const PG_MODES = ['disable' => null, 'require' => 'verify-full', 'verify-full' => 'verify-full',
        'verify-ca' => 'verify-ca'];

    /** The DSN keys of the TLS mode and of the CA file, per driver (as the Rust host spells them). */
    private const MODE_KEYS = ['pgsql' => ['sslmode'], 'mysql' => ['ssl-mode', 'ssl_mode', 'sslmode', 'ssl']];
    private const CA_KEYS = ['pgsql' => ['sslrootcert'], 'mysql' => ['ssl-ca', 'ssl_ca']];
    private const PG_CLIENT_CERT_KEYS = ['sslcert', 'sslkey', 'sslpassword'];

    private const MYSQL_MODES = ['disabled' => false, 'required' => true, 'verify_identity' => true, 'true' => true,
        '1' => true, 'false' => false, '0' => false];

    /**
     * Opens the connection. $attributes are PDO attributes for the constructor (the TLS ones
     * are set here and may not be given); errors are always exceptions.
     *
     * @param array<int, mixed> $attributes
     * @throws InvalidArgumentException a TLS parameter with a value that would not verify, or an unreadable CA file
     * @throws DatabaseConnectionException the database refused or could not be reached, or TLS failed
     */
    public static function open(
        #[\SensitiveParameter] string $dsn,
        ?string $user,
        #[\SensitiveParameter] ?string $password,
        array $attributes = [],
    ): \PDO {
        [$driver, $dsn, $tls, $attributes] = self::prepare($dsn, $attributes);
        $attributes[\PDO::ATTR_ERRMODE] = \PDO::ERRMODE_EXCEPTION;
        // mysqlnd reports TLS failures as warnings too; they are folded into the exception.
        $warnings = [];
        set_error_handler(static function (int $no, string $message) use (&$warnings): bool {
            $warnings[] = $message;
            return true;
        }, E_WARNING);
        try {
            $pdo = new \PDO($dsn, $user, $password, $attributes);
        } catch (\PDOException $e) {
            throw new DatabaseConnectionException(self::failure($driver, $e, $warnings, $tls, $dsn, $password));
        } finally {
            restore_error_handler();
        }
        if ($tls && !self::isEncrypted($pdo)) {
            throw new DatabaseConnectionException(
                "the {$driver} connection was asked for TLS but the session is not encrypted; refused",
            );
        }
        return $pdo;
    }

    /** Whether the session on $pdo is encrypted (MariaDB/MySQL or PostgreSQL; false for others). */
    public static function isEncrypted(\PDO $pdo): bool
    {
        return match ($pdo->getAttribute(\PDO::ATTR_DRIVER_NAME)) {
            'mysql' => (string) ($pdo->query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")->fetch(\PDO::FETCH_NUM)[1] ?? '')
                !== '',
            'pgsql' => in_array(
                $pdo->query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')->fetchColumn(),
                [true, 't', 1, '1'],
                true,
            ),
            default => false,
        };
    }

    /**
     * The DSN for PDO, whether TLS is on, and the attributes, from the caller's DSN.
     *
     * @param array<int, mixed> $attributes
     * @return array{string, bool, bool, array<int, mixed>} [driver, dsn, tls, attributes]
     */
    private static function prepare(#[\SensitiveParameter] string $dsn, array $attributes): array
    {
        $colon = strpos($dsn, ':');
        $driver = $colon === false ? '' : strtolower(substr($dsn, 0, $colon));
        if (!in_array($driver, ['mysql', 'pgsql'], true)) {
            throw new InvalidArgumentException('PdoConnection opens mysql: and pgsql: DSNs only');
        }
        $kept = [];
        $mode = null;
        $ca = null;
        foreach (explode(';', substr($dsn, $colon + 1)) as $part) {
            if (trim($part) === '') {
                continue;
            }
            [$key, $value] = array_map('trim', explode('=', $part, 2)) + [1 => ''];
            $lower = strtolower($key);
            if (in_array($lower, self::MODE_KEYS[$driver], true)) {
                $mode = [$key, $value];
            } elseif (in_array($lower, self::CA_KEYS[$driver], true)) {
                $ca = [$key, $value];
            } elseif ($driver === 'pgsql' && in_array($lower, self::PG_CLIENT_CERT_KEYS, true)) {
                throw new InvalidArgumentException("{$key}: client certificates are not supported");
            } else {
                $kept[] = $part;
            }
        }
        if (!extension_loaded("pdo_{$driver}")) {
            throw new InvalidArgumentException("PHP's pdo_{$driver} extension is not loaded");
        }
        $tls = $driver === 'pgsql' ? self::pgTls($mode, $ca, $kept) : self::mysqlTls($mode, $ca, $attributes);
        return [$driver, "{$driver}:" . implode(';', $kept), $tls, $attributes];
    }

    /**
     * @param array{string, string}|null $mode
     * @param array{string, string}|null $ca
     * @param list<string> $kept the DSN's other parts, to which libpq's TLS parameters are added
     */
    private static function pgTls(?array $mode, ?array $ca, array &$kept): bool
    {
        if ($mode === null) {
            if ($ca !== null) {
                throw new InvalidArgumentException("{$ca[0]} without sslmode: add sslmode=verify-full");
            }
            return false;
        }
        $value = strtolower($mode[1]);
        if (!array_key_exists($value, self::PG_MODES)) {
            throw new InvalidArgumentException(in_array($value, ['allow', 'prefer'], true)
                ? "sslmode={$mode[1]} falls back to a connection without TLS and verifies nothing: "
                    . 'use verify-full (or disable on a trusted network)'
                : "sslmode={$mode[1]}: use disable, require, verify-ca or verify-full");
        }
        $sent = self::PG_MODES[$value];
        if ($sent === null) {
            $kept[] = 'sslmode=disable';
            return false;
        }
        $kept[] = "sslmode={$sent}";
        $kept[] = 'sslrootcert=' . self::caFile($ca, 'system');
        return true;
    }

    /**
     * @param array{string, string}|null $mode
     * @param array{string, string}|null $ca
     * @param array<int, mixed> $attributes
     */
    private static function mysqlTls(?array $mode, ?array $ca, array &$attributes): bool
    {
        foreach ([\PDO::MYSQL_ATTR_SSL_CA, \PDO::MYSQL_ATTR_SSL_CAPATH] as $attr) {
            if (array_key_exists($attr, $attributes)) {
                throw new InvalidArgumentException('set TLS in the DSN (ssl-mode, ssl-ca), not as PDO attributes');
            }
        }
        if (array_key_exists(\PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT, $attributes)) {
            throw new InvalidArgumentException('set TLS in the DSN (ssl-mode, ssl-ca), not as PDO attributes');
        }
        if ($mode === null) {
            if ($ca !== null) {
                throw new InvalidArgumentException("{$ca[0]} without ssl-mode: add ssl-mode=VERIFY_IDENTITY");
            }
            return false;
        }
        $value = strtolower($mode[1]);
        if ($value === 'verify_ca') {
            throw new InvalidArgumentException("{$mode[0]}=VERIFY_CA: PHP's MySQL driver (mysqlnd) always checks "
                . 'the host name with the chain; use VERIFY_IDENTITY with a host name the certificate names');
        }
        if (!array_key_exists($value, self::MYSQL_MODES)) {
            throw new InvalidArgumentException($value === 'preferred'
                ? "{$mode[0]}={$mode[1]} falls back to a connection without TLS and verifies nothing: "
                    . 'use VERIFY_IDENTITY (or DISABLED on a trusted network)'
                : "{$mode[0]}={$mode[1]}: use DISABLED, REQUIRED or VERIFY_IDENTITY");
        }
        if (!self::MYSQL_MODES[$value]) {
            return false;
        }
        $attributes[\PDO::MYSQL_ATTR_SSL_CA] = self::caFile($ca, 'system');
        $attributes[\PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT] = true;
        return true;
    }

    /**
     * The CA file to trust: the one named, or the system's bundle (absent, or `system`).
     *
     * @param array{string, string}|null $ca
     */
    private static function caFile(?array $ca, string $system): string
    {
        if ($ca === null || $ca[1] === $system) {
            $locations = openssl_get_cert_locations();
            $bundle = getenv('SSL_CERT_FILE') ?: ($locations['default_cert_file'] ?? '');
            if ($bundle === '' || !is_readable($bundle)) {
                throw new InvalidArgumentException("no CA file named and no system CA bundle ({$bundle}): name one");
            }
            return $bundle;
        }
        if ($ca[1] === '' || !is_file($ca[1]) || !is_readable($ca[1])) {
            throw new InvalidArgumentException("{$ca[0]}={$ca[1]}: no readable CA file there");
        }
        if (!str_contains((string) file_get_contents($ca[1]), '-----BEGIN CERTIFICATE-----')) {
            throw new InvalidArgumentException("{$ca[0]}={$ca[1]}: the file holds no PEM certificate");
        }
        return $ca[1];
    }

    /**
     * What the driver said, without the password or the DSN, with what TLS adds to it.
     *
     * @param list<string> $warnings
     */
    private static function failure(
        string $driver,
        \PDOException $e,
        array $warnings,
        bool $tls,
        #[\SensitiveParameter] string $dsn,
        #[\SensitiveParameter] ?string $password,
    ): string {
        $said = trim(preg_replace('/^SQLSTATE\[[^\]]*\]\s*/', '', $e->getMessage()) ?? '');
        foreach ($warnings as $w) {
            $w = trim(preg_replace('/^PDO::__construct\(\):\s*/', '', $w) ?? '');
            if ($w !== '' && !str_contains($said, $w)) {
                $said .= "; {$w}";
            }
        }
        $message = "cannot connect to the {$driver} database: {$said}";
        if ($tls && $driver === 'mysql' && preg_match('/\[(2002|2006|2013)\]/', $e->getMessage())) {
            $message .= ' (TLS was asked for: the server\'s certificate was refused (not signed by a trusted CA, '
                . 'or it does not name the DSN\'s host), or the server offers no TLS)';
        }
        foreach ([$password, $dsn] as $secret) {
            if ($secret !== null && $secret !== '') {
                $message = str_replace($secret, '***', $message);
            }
        }
        // A password given in a libpq DSN (password=...) is never echoed by the driver, but make sure.
        return preg_replace('/(password\s*=\s*)[^;\s]+/i', '$1***', $message) ?? $message;
    }
}
