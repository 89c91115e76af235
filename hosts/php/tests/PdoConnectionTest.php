<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\DatabaseConnectionException;
use ScimProvisioner\InvalidArgumentException;
use ScimProvisioner\PdoConnection;
use ScimProvisioner\PdoDirectory;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\Tests\Support\DatabaseServer;
use ScimProvisioner\Tests\Support\Peers;
use ScimProvisioner\Tests\Support\TestCertificates;

/**
 * TLS to the database from PHP ({@see PdoConnection}), against a real MariaDB and a real
 * PostgreSQL that this run starts with TLS on (certificates made with `openssl`: a CA, a
 * server certificate it signed for `localhost` and 127.0.0.1, and a CA that signed
 * nothing here), as a user the server lets in over TLS only:
 * - the right CA connects, and the server says the session is encrypted;
 * - a wrong CA, or a host name the certificate does not hold, is refused, with an error
 *   that says so and holds no password;
 * - a server without TLS is refused, never used in plain text;
 * - settings that would not verify (prefer, PREFERRED, a CA without a mode) are refused
 *   before any connection.
 */
final class PdoConnectionTest extends TestCase
{
    /** @return array<string, array{string}> */
    public static function databases(): array
    {
        return ['mariadb' => ['mariadb'], 'postgres' => ['postgres']];
    }

    /**
     * The TLS server of $kind, a database on it, and a user of that database that may
     * connect over TLS only.
     *
     * @return array{DatabaseServer, string, string} [server, database, user]
     */
    private function tlsServer(string $kind): array
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::getTls($kind);
        $db = $server->createDatabase('tls');
        return [$server, $db, $server->requireTlsFor($db)];
    }

    /** The DSN of $db on $server at $host, asking for TLS with $mode and the CA file $ca. */
    private static function dsn(DatabaseServer $server, string $db, string $mode, ?string $ca, string $host = '127.0.0.1'): string
    {
        if ($server->kind === 'mariadb') {
            return "mysql:host={$host};port={$server->port};dbname={$db};charset=utf8mb4;ssl-mode={$mode}"
                . ($ca === null ? '' : ";ssl-ca={$ca}");
        }
        return "pgsql:host={$host};port={$server->port};dbname={$db};sslmode={$mode}"
            . ($ca === null ? '' : ";sslrootcert={$ca}");
    }

    private static function verifyMode(string $kind): string
    {
        return $kind === 'mariadb' ? 'VERIFY_IDENTITY' : 'verify-full';
    }

    /** @dataProvider databases */
    public function testTheRightCaConnectsAndTheSessionIsEncrypted(string $kind): void
    {
        [$server, $db, $user] = $this->tlsServer($kind);
        $ca = TestCertificates::get()->caFile();
        foreach ([self::verifyMode($kind), $kind === 'mariadb' ? 'REQUIRED' : 'require'] as $mode) {
            $pdo = PdoConnection::open(self::dsn($server, $db, $mode, $ca), $user, $server->password);
            $this->assertTrue(PdoConnection::isEncrypted($pdo), "{$kind} {$mode}");
            $cipher = $kind === 'mariadb'
                ? $pdo->query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")->fetch(\PDO::FETCH_NUM)[1]
                : $pdo->query('SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()')->fetchColumn();
            $this->assertNotEmpty($cipher, 'the server names the session\'s cipher');
        }
        // The user is refused without TLS: the encryption above is not the server's choice.
        try {
            new \PDO(str_replace(['ssl-mode=VERIFY_IDENTITY', 'sslmode=verify-full'], ['', 'sslmode=disable'],
                self::dsn($server, $db, self::verifyMode($kind), null)), $user, $server->password);
            $this->fail('the TLS-only user got in without TLS');
        } catch (\PDOException) {
        }

        // The library's stores on such a connection: PdoDirectory::connect takes the same DSN.
        $dir = PdoDirectory::connect(self::dsn($server, $db, self::verifyMode($kind), $ca), $user, $server->password,
            Peers::runtime(), ['cms_table' => null]);
        $this->assertTrue(PdoConnection::isEncrypted($dir->pdo()));
        $id = $dir->create(ResourceKind::User, '{"userName":"over.tls"}', null)->id;
        $this->assertSame($id, $dir->get(ResourceKind::User, $id)?->id);
    }

    /** @dataProvider databases */
    public function testAWrongCaOrHostIsRefusedClearlyWithoutThePassword(string $kind): void
    {
        [$server, $db, $user] = $this->tlsServer($kind);
        $certs = TestCertificates::get();
        $cases = [
            'a wrong CA' => [self::dsn($server, $db, self::verifyMode($kind), $certs->otherCaFile()),
                $kind === 'mariadb' ? 'certificate was refused' : 'certificate verify failed'],
            // `vm` is 127.0.0.1 too (/etc/hosts), but the certificate does not name it.
            'a host the certificate does not name' => [self::dsn($server, $db, self::verifyMode($kind), $certs->caFile(), 'vm'),
                $kind === 'mariadb' ? 'does not name the DSN\'s host' : 'does not match host name'],
        ];
        if (gethostbyname('vm') !== '127.0.0.1') {
            unset($cases['a host the certificate does not name']);
        }
        foreach ($cases as $what => [$dsn, $reason]) {
            try {
                PdoConnection::open($dsn, $user, $server->password);
                $this->fail("{$kind}: {$what} was accepted");
            } catch (DatabaseConnectionException $e) {
                $this->assertStringContainsString($reason, $e->getMessage(), "{$kind}: {$what}");
                $this->assertStringNotContainsString($server->password, $e->getMessage());
                $this->assertStringNotContainsString($server->password, $e->getTraceAsString());
                $this->assertNull($e->getPrevious(), 'the driver\'s exception (and its trace) is not kept');
            }
        }
        // PostgreSQL's verify-ca checks the chain only: the same host is accepted.
        if ($kind === 'postgres' && isset($cases['a host the certificate does not name'])) {
            $pdo = PdoConnection::open(self::dsn($server, $db, 'verify-ca', $certs->caFile(), 'vm'), $user, $server->password);
            $this->assertTrue(PdoConnection::isEncrypted($pdo));
        }
    }

    /** @dataProvider databases */
    public function testAServerWithoutTlsIsRefusedNotUsedInPlainText(string $kind): void
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $plain = DatabaseServer::get($kind);
        $db = $plain->createDatabase('plain');
        try {
            PdoConnection::open(self::dsn($plain, $db, self::verifyMode($kind), TestCertificates::get()->caFile()),
                $plain->user(), $plain->password);
            $this->fail("{$kind}: a server without TLS was used");
        } catch (DatabaseConnectionException $e) {
            $this->assertStringContainsString('cannot connect', $e->getMessage());
            $this->assertStringNotContainsString($plain->password, $e->getMessage());
        }
        // Without TLS asked for, the same server is used as before.
        $pdo = PdoConnection::open(str_replace(['ssl-mode=VERIFY_IDENTITY', 'sslmode=verify-full'], ['', 'sslmode=disable'],
            self::dsn($plain, $db, self::verifyMode($kind), null)), $plain->user(), $plain->password);
        $this->assertFalse(PdoConnection::isEncrypted($pdo));
    }

    /** Settings that would fall back to plain text or check nothing never reach a server. */
    public function testSettingsThatWouldNotVerifyAreRefused(): void
    {
        if (!extension_loaded('pdo_mysql') || !extension_loaded('pdo_pgsql')) {
            $this->markTestSkipped('pdo_mysql and pdo_pgsql are needed');
        }
        $ca = TestCertificates::get()->caFile();
        $notPem = tempnam(sys_get_temp_dir(), 'scim-not-pem');
        file_put_contents($notPem, "not a certificate\n");
        $refused = [
            'pgsql:host=db.invalid;dbname=x;sslmode=prefer' => 'falls back',
            'pgsql:host=db.invalid;dbname=x;sslmode=allow' => 'falls back',
            'pgsql:host=db.invalid;dbname=x;sslmode=sometimes' => 'use disable, require',
            "pgsql:host=db.invalid;dbname=x;sslrootcert={$ca}" => 'without sslmode',
            'pgsql:host=db.invalid;dbname=x;sslmode=verify-full;sslrootcert=/nonexistent/ca.pem' => 'no readable CA file',
            "pgsql:host=db.invalid;dbname=x;sslmode=verify-full;sslrootcert={$notPem}" => 'no PEM certificate',
            'pgsql:host=db.invalid;dbname=x;sslmode=verify-full;sslcert=/tmp/c.pem' => 'client certificates',
            'mysql:host=db.invalid;dbname=x;ssl-mode=PREFERRED' => 'falls back',
            'mysql:host=db.invalid;dbname=x;ssl-mode=VERIFY_CA' => 'always checks the host name',
            "mysql:host=db.invalid;dbname=x;ssl-ca={$ca}" => 'without ssl-mode',
            'mysql:host=db.invalid;dbname=x;ssl_mode=maybe' => 'use DISABLED, REQUIRED',
            'sqlite::memory:' => 'mysql: and pgsql: DSNs only',
        ];
        foreach ($refused as $dsn => $why) {
            try {
                PdoConnection::open($dsn, 'u', 'pw-not-shown');
                $this->fail("accepted: {$dsn}");
            } catch (InvalidArgumentException $e) {
                $this->assertStringContainsString($why, $e->getMessage(), $dsn);
                $this->assertStringNotContainsString('pw-not-shown', $e->getMessage());
            }
        }
        try {
            PdoConnection::open("mysql:host=db.invalid;dbname=x;ssl-mode=VERIFY_IDENTITY;ssl-ca={$ca}", 'u', 'p', [
                \PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => false,
            ]);
            $this->fail('a PDO attribute turned verification off');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('not as PDO attributes', $e->getMessage());
        }
        unlink($notPem);
    }
}
