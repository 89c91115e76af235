<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\BridgeException;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\Request;
use ScimProvisioner\Runtime;
use ScimProvisioner\ScimServer;
use ScimProvisioner\Tests\Support\CollectingPsrLogger;
use ScimProvisioner\Tests\Support\Peers;

/**
 * Issue 28 (security, second pass), the PHP library's parts: private cache folders (1),
 * no internals in SCIM error details (5), passwords only as hashes (6).
 */
final class SecurityTest extends TestCase
{
    private const TOKEN = 'S3cur1tyT0kenS3cur1ty';
    private const PASSWORD = 'Clear-Text-Pa55word-7f3a9c';

    /** @return list<array{0: string, 1: string}> */
    private static function headers(): array
    {
        return [['Authorization', 'Bearer ' . self::TOKEN], ['Content-Type', 'application/scim+json']];
    }

    private static function server(string $db, CollectingPsrLogger $logger): ScimServer
    {
        $runtime = Peers::runtime();
        return ScimServer::open(
            $runtime,
            ['base_url' => 'http://127.0.0.1/scim/v2', 'token' => self::TOKEN],
            PdoSqliteDirectory::open($db, $runtime),
            $logger,
        );
    }

    /** Every byte SQLite keeps for $db: the file, its write-ahead log and shared memory. */
    private static function databaseBytes(string $db): string
    {
        $bytes = '';
        foreach ([$db, "{$db}-wal", "{$db}-shm", "{$db}-journal"] as $file) {
            if (is_file($file)) {
                $bytes .= (string) file_get_contents($file);
            }
        }
        return $bytes;
    }

    /**
     * Finding 1: the bridge maps the `.cwasm` files of `cache_dir` as native code, so a cache
     * folder another user owns or others can write is refused; a new one is created 0700.
     */
    public function testACacheFolderOthersCanWriteIsRefusedAndANewOneIsPrivate(): void
    {
        $parent = Peers::tempDir('cache-modes');
        $shared = "{$parent}/shared";
        mkdir($shared);
        chmod($shared, 0o777);
        try {
            new Runtime(['cache_dir' => $shared]);
            $this->fail('a world-writable cache folder must be refused');
        } catch (BridgeException $e) {
            $this->assertStringContainsString("refusing the folder {$shared}", $e->getMessage());
            $this->assertStringContainsString('writable by', $e->getMessage());
        }
        chmod($shared, 0o770);
        try {
            new Runtime(['cache_dir' => $shared]);
            $this->fail('a group-writable cache folder must be refused');
        } catch (BridgeException $e) {
            $this->assertStringContainsString('writable by its group', $e->getMessage());
        }
        if (posix_geteuid() === 0) {
            // Root can make a folder another user's, as one who created it first would have.
            $foreign = "{$parent}/foreign";
            mkdir($foreign, 0o755);
            chown($foreign, 65534);
            try {
                new Runtime(['cache_dir' => $foreign]);
                $this->fail("a cache folder of another user must be refused");
            } catch (BridgeException $e) {
                $this->assertStringContainsString('belongs to user 65534', $e->getMessage());
            }
        }
        $fresh = "{$parent}/new/cache";
        $old = umask(0o022);
        try {
            $runtime = new Runtime(['cache_dir' => $fresh]);
        } finally {
            umask($old);
        }
        $this->assertSame(0o700, fileperms($fresh) & 0o777, 'a cache folder is created private');
        $this->assertStringStartsWith(realpath($fresh), (string) $runtime->info()['cache_file']);
    }

    /**
     * Finding 6: a password an identity provider sends is stored only as a hash: not in any
     * byte of the SQLite files, not in the log, never returned; the CMS can check it.
     */
    public function testAPasswordIsStoredOnlyAsAHashAndNeverReturnedOrLogged(): void
    {
        $dir = Peers::tempDir('password');
        $db = "{$dir}/joomla.db";
        $logger = new CollectingPsrLogger();
        $server = self::server($db, $logger);
        $created = $server->handle(new Request('POST', '/Users', '', self::headers(), (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'],
            'userName' => 'pat.hash', 'password' => self::PASSWORD,
            'emails' => [['value' => 'pat@example.test', 'type' => 'work']],
        ])));
        $this->assertSame(201, $created->status, $created->body);
        $this->assertStringNotContainsString(self::PASSWORD, $created->body);
        $id = (string) json_decode($created->body, true)['id'];
        $read = $server->handle(new Request('GET', "/Users/{$id}", '', self::headers()));
        $this->assertSame(200, $read->status, $read->body);
        $this->assertArrayNotHasKey('password', json_decode($read->body, true));

        $directory = PdoSqliteDirectory::open($db, Peers::runtime());
        $this->assertTrue($directory->verifyPassword('PAT.hash', self::PASSWORD), 'the CMS can check the password');
        $this->assertFalse($directory->verifyPassword('pat.hash', 'wrong'));
        $this->assertFalse($directory->verifyPassword('nobody', self::PASSWORD));

        // A PUT without a password keeps the hash; a PATCH that sets one replaces it.
        $put = $server->handle(new Request('PUT', "/Users/{$id}", '', self::headers(), (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'], 'userName' => 'pat.hash', 'displayName' => 'Pat',
        ])));
        $this->assertSame(200, $put->status, $put->body);
        $this->assertTrue($directory->verifyPassword('pat.hash', self::PASSWORD), 'a PUT without a password keeps it');
        $patch = $server->handle(new Request('PATCH', "/Users/{$id}", '', self::headers(), (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
            'Operations' => [['op' => 'replace', 'path' => 'password', 'value' => self::PASSWORD . '-new']],
        ])));
        $this->assertSame(200, $patch->status, $patch->body);
        $this->assertStringNotContainsString(self::PASSWORD, $patch->body);
        $this->assertTrue($directory->verifyPassword('pat.hash', self::PASSWORD . '-new'));

        unset($server, $directory);
        gc_collect_cycles();
        $this->assertStringNotContainsString(self::PASSWORD, self::databaseBytes($db), 'no clear password in any table');
        $this->assertStringNotContainsString(self::PASSWORD, $logger->text(), 'no password in the log');
    }

    /** Finding 6: a database written before passwords were hashed is migrated on open. */
    public function testAClearPasswordInAnOlderDatabaseIsHashedAndErasedOnOpen(): void
    {
        $dir = Peers::tempDir('migrate');
        $db = "{$dir}/old.db";
        $pdo = new \PDO("sqlite:{$db}");
        $pdo->exec('PRAGMA journal_mode = WAL');
        $pdo->exec('CREATE TABLE scim_users (id TEXT PRIMARY KEY, version INTEGER NOT NULL, created TEXT NOT NULL,
            last_modified TEXT NOT NULL, unique_key TEXT UNIQUE, external_id TEXT, json TEXT NOT NULL)');
        $json = (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'], 'id' => 'u-1',
            'userName' => 'old.row', 'password' => self::PASSWORD,
        ]);
        $pdo->prepare("INSERT INTO scim_users VALUES ('u-1', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'old.row', NULL, ?)")
            ->execute([$json]);
        $pdo = null;
        $this->assertStringContainsString(self::PASSWORD, self::databaseBytes($db), 'the old row holds it in clear');

        $directory = PdoSqliteDirectory::open($db, Peers::runtime());
        $stored = $directory->get(\ScimProvisioner\ResourceKind::User, 'u-1');
        $this->assertNotNull($stored);
        $this->assertStringNotContainsString('password', $stored->json);
        $this->assertTrue($directory->verifyPassword('old.row', self::PASSWORD));
        unset($directory);
        gc_collect_cycles();
        $this->assertStringNotContainsString(self::PASSWORD, self::databaseBytes($db), 'the migration leaves no copy on disk');
    }

    /**
     * Finding 5: a PDO/SQLite error's text (SQL, paths) never reaches a SCIM `detail`: the
     * client gets a plain sentence and a reference, and the log line with the full text
     * carries the same reference (the component's format), once.
     */
    public function testADatabaseErrorReachesTheLogUnderTheReferenceTheAnswerCarries(): void
    {
        $dir = Peers::tempDir('pdo-error');
        $db = "{$dir}/broken.db";
        $logger = new CollectingPsrLogger();
        $server = self::server($db, $logger);
        // Another process breaks the schema under the open directory.
        (new \PDO("sqlite:{$db}"))->exec('DROP TABLE scim_users');
        $answer = $server->handle(new Request('GET', '/Users', 'filter=' . rawurlencode('userName eq "x"'), self::headers()));
        $this->assertContains($answer->status, [500, 503], $answer->body);
        $detail = (string) (json_decode($answer->body, true)['detail'] ?? '');
        foreach (['SQLSTATE', 'scim_users', 'no such table', $dir, 'PDO'] as $internal) {
            $this->assertStringNotContainsString($internal, $detail);
        }
        $this->assertMatchesRegularExpression('/reference ([0-9a-f]{12})$/', $detail);
        preg_match('/reference ([0-9a-f]{12})$/', $detail, $m);
        $withText = array_values(array_filter(
            $logger->lines,
            static fn (array $l): bool => str_contains($l['message'] . json_encode($l['context']), 'no such table'),
        ));
        $this->assertCount(1, $withText, "the database's text is logged once:\n" . $logger->text());
        $this->assertStringContainsString("reference {$m[1]}", $withText[0]['message'] . json_encode($withText[0]['context']));
    }
}
