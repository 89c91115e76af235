<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\DirectoryException;
use ScimProvisioner\InvalidArgumentException;
use ScimProvisioner\PdoDirectory;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\Search;
use ScimProvisioner\Tests\Support\DatabaseServer;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * PdoDirectory on a real MariaDB and a real PostgreSQL (each started by the test run, on a
 * loopback port, in a temp dir): the same behaviour as the SQLite directory, a schema
 * created and recorded from an empty database, and If-Match and uniqueness holding across
 * processes racing on one row.
 */
final class PdoDirectoryTest extends TestCase
{
    /** @return array<string, array{string}> */
    public static function databases(): array
    {
        return ['mariadb' => ['mariadb'], 'postgres' => ['postgres']];
    }

    private function open(string $kind, ?string &$db = null, array $options = []): PdoDirectory
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $db = $server->createDatabase('dir');
        return new PdoDirectory($server->pdo($db), Peers::runtime(), $options);
    }

    private static function add(PdoDirectory $dir, string $userName, string $family, string $externalId, bool $active = true): string
    {
        $json = (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'],
            'userName' => $userName,
            'externalId' => $externalId,
            'name' => ['familyName' => $family],
            'emails' => [['type' => 'work', 'value' => "{$userName}@example.com"]],
            'active' => $active,
        ]);
        $cms = new CmsUser('', ['name' => $userName, 'mail' => "{$userName}@example.com", 'field_last_name' => $family], $active);
        return $dir->create(ResourceKind::User, $json, $cms)->id;
    }

    /** @return list<string> */
    private static function names(PdoDirectory $dir, Search $search): array
    {
        $page = $dir->query(ResourceKind::User, $search);
        return array_map(static fn ($r): string => json_decode($r->json, true)['userName'], $page->resources);
    }

    /** @dataProvider databases */
    public function testSchemaIsCreatedAndRecordedFromAnEmptyDatabase(string $kind): void
    {
        $dir = $this->open($kind, $db);
        $this->assertSame(PdoDirectory::SCHEMA_VERSION, $dir->schemaVersion());
        $versions = $dir->pdo()->query('SELECT name, version FROM scim_schema')->fetchAll(\PDO::FETCH_KEY_PAIR);
        $this->assertSame(['directory' => PdoDirectory::SCHEMA_VERSION], array_map('intval', $versions));
        // Opening it again (every PHP request does) changes nothing.
        $again = new PdoDirectory(DatabaseServer::get($kind)->pdo($db), Peers::runtime());
        $this->assertSame(PdoDirectory::SCHEMA_VERSION, $again->schemaVersion());
        $this->assertSame(1, (int) $dir->pdo()->query('SELECT COUNT(*) FROM scim_schema')->fetchColumn());

        $this->expectException(InvalidArgumentException::class);
        new PdoDirectory(new \PDO('sqlite::memory:'), Peers::runtime());
    }

    /** @dataProvider databases */
    public function testCrudVersionsUniquenessAndTheCmsUser(string $kind): void
    {
        $dir = $this->open($kind);
        $id = self::add($dir, 'Alice', 'Liddell', 'e1');
        $stored = $dir->get(ResourceKind::User, $id);
        $this->assertNotNull($stored);
        $this->assertSame('W/"1"', $stored->version);
        $this->assertNull($dir->get(ResourceKind::User, 'nope'));
        try {
            self::add($dir, 'ALICE', 'Other', 'e2');
            $this->fail('userName is unique, case-insensitively');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
        }
        // Accents are not folded: "Alicé" is another user (MariaDB's default collation would say equal).
        self::add($dir, 'Alicé', 'Accent', 'e3');

        $replaced = $dir->replace(ResourceKind::User, $id, '{"userName":"alice","name":{"familyName":"L2"}}', null, 'W/"1"');
        $this->assertSame('W/"2"', $replaced->version);
        $this->assertSame('W/"2"', $dir->get(ResourceKind::User, $id)->version);
        foreach ([['W/"1"', 'version-mismatch', $id], [null, 'not-found', 'missing']] as [$ifMatch, $case, $target]) {
            try {
                $dir->replace(ResourceKind::User, $target, '{"userName":"alice"}', null, $ifMatch);
                $this->fail("expected {$case}");
            } catch (DirectoryException $e) {
                $this->assertSame($case, $e->case);
            }
        }
        $cms = $dir->pdo()->query("SELECT name, mail, active FROM scim_cms_users WHERE name_key = 'alice'")->fetchAll(\PDO::FETCH_ASSOC);
        $this->assertSame([['name' => 'Alice', 'mail' => 'Alice@example.com', 'active' => 1]], array_map(
            static fn (array $r): array => ['name' => $r['name'], 'mail' => $r['mail'], 'active' => (int) $r['active']],
            $cms,
        ));

        $group = $dir->create(ResourceKind::Group, (string) json_encode(['displayName' => 'Editors', 'members' => [['value' => $id]]]), null);
        $this->assertTrue($dir->delete(ResourceKind::User, $id));
        $this->assertFalse($dir->delete(ResourceKind::User, $id));
        $this->assertSame(0, (int) $dir->pdo()->query("SELECT COUNT(*) FROM scim_cms_users WHERE id = '{$id}'")->fetchColumn());
        $g = $dir->get(ResourceKind::Group, $group->id);
        $this->assertSame([], json_decode($g->json, true)['members'], 'a deleted user leaves its groups');
        $this->assertSame('W/"2"', $g->version);
    }

    /** @dataProvider databases */
    public function testQueriesMembershipIndexAndPaging(string $kind): void
    {
        $dir = $this->open($kind);
        foreach ([['carol', 'Danvers', 'e3'], ['alice', 'Liddell', 'e1'], ['bob', 'Builder', 'e2'], ['dave', 'Bowman', 'e4', false]] as $u) {
            $ids[$u[0]] = self::add($dir, ...$u);
        }
        $this->assertSame(['alice'], self::names($dir, new Search('userName eq "ALICE"', 1, 10, null, false)));
        $this->assertSame(['bob'], self::names($dir, new Search('externalId eq "e2"', 1, 10, null, false)));
        $this->assertSame(['dave', 'bob'], self::names($dir, new Search('name.familyName sw "B"', 1, 10, 'userName', true)));
        $this->assertSame(['carol', 'alice', 'bob', 'dave'], self::names($dir, new Search(null, 1, 10, null, false)), 'insertion order');
        $this->assertSame(['bob', 'carol'], self::names($dir, new Search(null, 2, 2, 'userName', false)));
        $page = $dir->query(ResourceKind::User, new Search(null, 4, 10, null, false));
        $this->assertSame([4, 1], [$page->totalResults, count($page->resources)]);

        $group = fn (string $name, array $members): string => $dir->create(ResourceKind::Group, (string) json_encode([
            'displayName' => $name, 'members' => array_map(static fn (string $m): array => ['value' => $m], $members),
        ]), null)->id;
        $both = $group('both', [$ids['alice'], $ids['bob']]);
        $group('only-bob', [$ids['bob']]);
        $group('variant', [strtoupper($ids['alice'])]);
        $of = static fn (string $id): Search => new Search("members[value eq \"{$id}\"]", 1, 100, null, false);
        $groups = static fn (Search $s): array => array_map(
            static fn ($r): string => json_decode($r->json, true)['displayName'],
            $dir->query(ResourceKind::Group, $s)->resources,
        );
        $this->assertSame(['both', 'only-bob'], $groups($of($ids['bob'])), 'from the index, exact values');
        $this->assertSame(['both', 'variant'], $groups($of($ids['alice'])), 'a case variant: the filter engine decides');
        $dir->replace(ResourceKind::Group, $both, (string) json_encode(['displayName' => 'both', 'members' => []]), null, null);
        $this->assertSame(['only-bob'], $groups($of($ids['bob'])), 'a replace moves the index');
    }

    /**
     * A login name a CMS user (one the CMS made, not the identity provider) already holds,
     * in any case, is a conflict (409 uniqueness), on a create and on a replace, and leaves
     * nothing behind: the same answer as PdoSqliteDirectory and the Rust host's directories.
     *
     * @dataProvider databases
     */
    public function testACmsNameClashIsAConflictAndLeavesNothing(string $kind): void
    {
        $dir = $this->open($kind);
        $pdo = $dir->pdo();
        $pdo->exec("INSERT INTO scim_cms_users (id, name, name_key, mail, fields, active)
            VALUES ('cms-1', 'Site.Editor', 'site.editor', 'ed@cms.example', '{}', 1)");
        $clash = static fn (string $name): CmsUser => new CmsUser('', ['name' => $name, 'mail' => 'x@idp.example'], true);
        try {
            $dir->create(ResourceKind::User, '{"userName":"site.editor","password":"s3cret-Pass"}', $clash('SITE.EDITOR'));
            $this->fail('a CMS user holds the name');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
            $this->assertStringNotContainsString('s3cret', $e->getMessage());
        }
        $this->assertSame(0, (int) $pdo->query('SELECT COUNT(*) FROM scim_users')->fetchColumn());

        $bobId = self::add($dir, 'bob', 'Builder', 'e1');
        $bob = $dir->get(ResourceKind::User, $bobId);
        try {
            $dir->replace(ResourceKind::User, $bobId, '{"userName":"bob","title":"moved"}', $clash('site.editor'), $bob->version);
            $this->fail('a CMS user holds the name');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
        }
        $kept = $dir->get(ResourceKind::User, $bobId);
        $this->assertSame([$bob->version, $bob->json], [$kept->version, $kept->json]);
        $this->assertSame(
            [$bobId => 'bob', 'cms-1' => 'Site.Editor'],
            $pdo->query('SELECT id, name FROM scim_cms_users ORDER BY name_key')->fetchAll(\PDO::FETCH_KEY_PAIR),
        );
        // Its own name in another case is no clash.
        $dir->replace(ResourceKind::User, $bobId, '{"userName":"Bob"}', $clash('Bob'), $bob->version);
        $this->assertSame('Bob', $pdo->query("SELECT name FROM scim_cms_users WHERE id = '{$bobId}'")->fetchColumn());
    }

    /** @dataProvider databases */
    public function testPasswordsAreStoredOnlyAsHashes(string $kind): void
    {
        $dir = $this->open($kind);
        $secret = 'correct horse ' . bin2hex(random_bytes(4));
        $cms = new CmsUser('', ['name' => 'pat', 'password' => $secret], true);
        $id = $dir->create(ResourceKind::User, (string) json_encode(['userName' => 'pat', 'password' => $secret]), $cms)->id;
        $this->assertStringNotContainsString($secret, $dir->get(ResourceKind::User, $id)->json);
        $this->assertTrue($dir->verifyPassword('PAT', $secret));
        $this->assertFalse($dir->verifyPassword('pat', 'wrong'));
        $this->assertFalse($dir->verifyPassword('nobody', $secret));
        $dump = json_encode([
            $dir->pdo()->query('SELECT * FROM scim_users')->fetchAll(\PDO::FETCH_ASSOC),
            $dir->pdo()->query('SELECT * FROM scim_cms_users')->fetchAll(\PDO::FETCH_ASSOC),
        ]);
        $this->assertStringNotContainsString($secret, (string) $dump, 'never stored as sent');
        $dir->replace(ResourceKind::User, $id, '{"userName":"pat","nickName":"p"}', null, null);
        $this->assertTrue($dir->verifyPassword('pat', $secret), 'a replace without a password keeps the hash');
    }

    /**
     * Four processes race: each reads the user's version and replaces it with that If-Match,
     * 60 times. Never do two win on the same version; every win is the next version.
     * Then four processes create the same 40 userNames: each is created exactly once.
     *
     * @dataProvider databases
     */
    public function testIfMatchAndUniquenessHoldAcrossProcesses(string $kind): void
    {
        $dir = $this->open($kind, $db, ['cms_table' => null]);
        $server = DatabaseServer::get($kind);
        $id = $dir->create(ResourceKind::User, '{"userName":"raced"}', null)->id;

        $wins = self::race($server, $db, 'replace', $id, 60);
        $ifMatches = array_map(static fn (string $l): int => (int) explode(' ', $l)[0], $wins);
        $this->assertSame(count($ifMatches), count(array_unique($ifMatches)), 'two processes won on one version');
        foreach ($wins as $line) {
            [$from, $to] = array_map('intval', explode(' ', $line));
            $this->assertSame($from + 1, $to, $line);
        }
        $final = (int) trim(substr($dir->get(ResourceKind::User, $id)->version, 2), '"');
        $this->assertSame(count($wins) + 1, $final, 'every write was a win that was reported');
        $this->assertGreaterThan(10, count($wins));

        $created = self::race($server, $db, 'create', 'dup', 40);
        sort($created);
        $expected = array_map(static fn (int $i): string => "dup-{$i}", range(0, 39));
        sort($expected);
        $this->assertSame($expected, $created, 'each userName created by exactly one process');
        $this->assertSame(40, (int) $dir->pdo()->query("SELECT COUNT(*) FROM scim_users WHERE unique_key LIKE 'dup-%'")->fetchColumn());
    }

    /**
     * scim2-tester (every check) and scim-sanity against a PHP-served SCIM API on this
     * database, as ServerRoleTest runs them against the SQLite one (SCIM_PHP_DB_CONFORMANCE=1).
     *
     * @dataProvider databases
     */
    public function testScim2TesterAndScimSanityPassOnThisDatabase(string $kind): void
    {
        // About a minute per database: run by hand (ServerRoleTest runs both in CI on SQLite,
        // and the rest of this class covers the directory on both databases).
        if (getenv('SCIM_PHP_DB_CONFORMANCE') !== '1') {
            $this->markTestSkipped('set SCIM_PHP_DB_CONFORMANCE=1 to run scim2-tester and scim-sanity on this database');
        }
        $this->open($kind, $db);
        $server = DatabaseServer::get($kind);
        $token = bin2hex(random_bytes(16));
        $site = new PhpServer(__DIR__ . '/support/pdo-scim-router.php', [
            'SCIM_TOKEN' => $token, 'PDO_DSN' => $server->dsn($db), 'PDO_USER' => $server->user(),
            'PDO_PASSWORD' => $server->password,
        ], Peers::logDir() . "/pdo-scim-{$kind}-" . getmypid() . '.log', '/scim/v2', 60.0, ['ffi.enable' => '1']);
        try {
            $venv = dirname(__DIR__, 3) . '/target/peers/venv/bin';
            [$status, $out] = self::runTool([$venv . '/scim2', '--url', $site->baseUrl, 'test'], ['SCIM_CLI_HEADERS' => "Authorization: Bearer {$token}"]);
            $lines = explode("\n", $out);
            $failures = array_values(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'ERROR') || str_starts_with($l, 'FAIL') || str_starts_with($l, 'CRITICAL')));
            $successes = count(array_filter($lines, static fn (string $l): bool => str_starts_with($l, 'SUCCESS')));
            $this->assertSame(0, $status, "scim2 test failed:\n{$out}\n" . PhpServer::tail($site->logFile));
            $this->assertSame([], $failures, $out);
            $this->assertGreaterThanOrEqual(100, $successes, $out);
            [$status, $out] = self::runTool([$venv . '/scim-sanity', 'probe', $site->baseUrl, '--token', $token, '--i-accept-side-effects']);
            $this->assertSame(0, $status, "scim-sanity failed:\n{$out}\n" . PhpServer::tail($site->logFile));
            $this->assertStringContainsString('All tests passed', $out);
            fwrite(STDERR, "\n{$kind}: scim2-tester {$successes} checks and scim-sanity passed on PdoDirectory\n");
        } finally {
            $site->stop();
        }
    }

    /**
     * @param list<string> $command
     * @param array<string, string> $env
     * @return array{0: int, 1: string}
     */
    private static function runTool(array $command, array $env = []): array
    {
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, null, array_merge(PhpServer::baseEnv(), $env));
        $out = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return [proc_close($process), $out];
    }

    /** @return list<string> every child's output lines */
    private static function race(DatabaseServer $server, string $db, string $mode, string $arg, int $count): array
    {
        $start = Peers::tempDir('race') . '/go';
        $children = [];
        for ($i = 0; $i < 4; $i++) {
            $children[] = proc_open(
                [PHP_BINARY, __DIR__ . '/support/pdo-directory-race.php', $server->dsn($db), $server->user(), $server->password, $mode, $arg, (string) $count],
                [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
                $pipes,
                null,
                ['RACE_START_FILE' => $start] + getenv(),
            );
            $outs[] = $pipes;
        }
        touch($start);
        $lines = [];
        foreach ($children as $i => $child) {
            $out = stream_get_contents($outs[$i][1]);
            $err = stream_get_contents($outs[$i][2]);
            $status = proc_close($child);
            if ($status !== 0) {
                throw new \RuntimeException("race child failed ({$status}): {$err}");
            }
            array_push($lines, ...array_filter(explode("\n", (string) $out), static fn (string $l): bool => $l !== ''));
        }
        return $lines;
    }
}
