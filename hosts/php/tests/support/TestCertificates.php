<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

/**
 * Certificates for a TLS test, made with the `openssl` command as the Rust host's
 * `database::test_support::TestCertificates` makes them: a CA, a server certificate it
 * signed for `localhost` and `127.0.0.1` (P-256, valid for 2 days), and a second CA that
 * signed nothing here (a wrong CA). In a temp dir, removed at the end of the run.
 */
final class TestCertificates
{
    private static ?self $made = null;

    private function __construct(public readonly string $dir)
    {
    }

    /** The run's certificates, made on first use. */
    public static function get(): self
    {
        if (self::$made === null) {
            $dir = sys_get_temp_dir() . '/scim-php-certs-' . getmypid() . '-' . bin2hex(random_bytes(4));
            mkdir($dir, 0o755);
            register_shutdown_function(static function () use ($dir): void {
                exec('rm -rf ' . escapeshellarg($dir));
            });
            foreach (['ca' => 'scim test CA', 'other-ca' => 'scim other CA'] as $name => $cn) {
                self::openssl($dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                    '-days', '2', '-subj', "/CN={$cn}", '-keyout', "{$name}.key", '-out', "{$name}.pem"]);
            }
            self::openssl($dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
            file_put_contents("{$dir}/server.ext", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                . "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n");
            self::openssl($dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
                '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem']);
            self::$made = new self($dir);
        }
        return self::$made;
    }

    /** The CA that signed the server's certificate (PEM). */
    public function caFile(): string
    {
        return "{$this->dir}/ca.pem";
    }

    /** A CA that signed nothing the servers use (PEM). */
    public function otherCaFile(): string
    {
        return "{$this->dir}/other-ca.pem";
    }

    /**
     * Copies the server's certificate and key into $dir, the key readable by its owner only;
     * returns [certificate, key]. The caller hands them to the server's user.
     *
     * @return array{string, string}
     */
    public function install(string $dir): array
    {
        copy("{$this->dir}/server.pem", "{$dir}/server.pem");
        copy("{$this->dir}/server.key", "{$dir}/server.key");
        chmod("{$dir}/server.key", 0o600);
        return ["{$dir}/server.pem", "{$dir}/server.key"];
    }

    /** @param list<string> $args */
    private static function openssl(string $dir, array $args): void
    {
        $command = implode(' ', array_map('escapeshellarg', ['openssl', ...$args]));
        exec('cd ' . escapeshellarg($dir) . " && {$command} 2>&1", $out, $rc);
        if ($rc !== 0) {
            throw new \RuntimeException("openssl {$args[0]} failed:\n" . implode("\n", $out));
        }
    }
}
