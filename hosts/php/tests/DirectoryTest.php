<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\DirectoryException;
use ScimProvisioner\PdoSqliteDirectory;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\Search;
use ScimProvisioner\Tests\Support\Peers;

/**
 * PdoSqliteDirectory on a real SQLite file, with the component's filter engine
 * (scimp_select) deciding filters, sorting and paging.
 */
final class DirectoryTest extends TestCase
{
    private PdoSqliteDirectory $dir;

    protected function setUp(): void
    {
        $this->dir = PdoSqliteDirectory::open(Peers::tempDir('directory') . '/d.db', Peers::runtime());
    }

    /** @return list<string> userNames of a page */
    private function names(Search $search): array
    {
        $page = $this->dir->query(ResourceKind::User, $search);
        return array_map(static fn ($r): string => json_decode($r->json, true)['userName'], $page->resources);
    }

    private function add(string $userName, string $family, string $externalId, bool $active = true): string
    {
        $json = (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:User'],
            'userName' => $userName,
            'externalId' => $externalId,
            'name' => ['familyName' => $family],
            'emails' => [['type' => 'work', 'value' => "{$userName}@example.com"]],
            'active' => $active,
        ]);
        return $this->dir->create(ResourceKind::User, $json, new CmsUser('', ['name' => $userName, 'mail' => "{$userName}@example.com", 'field_last_name' => $family], $active))->id;
    }

    public function testCrudVersionsAndUniqueness(): void
    {
        $id = $this->add('Alice', 'Liddell', 'e1');
        $stored = $this->dir->get(ResourceKind::User, $id);
        $this->assertNotNull($stored);
        $this->assertSame('W/"1"', $stored->version);
        $this->assertMatchesRegularExpression('/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/', $stored->created);
        $this->assertNull($this->dir->get(ResourceKind::User, 'nope'));

        try {
            $this->add('ALICE', 'Other', 'e2');
            $this->fail('userName is unique, case-insensitively');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
            $this->assertSame(['tag' => 'conflict', 'val' => $e->detail], $e->toWit());
        }

        $replaced = $this->dir->replace(ResourceKind::User, $id, '{"userName":"alice","name":{"familyName":"L2"}}', null, 'W/"1"');
        $this->assertSame('W/"2"', $replaced->version);
        try {
            $this->dir->replace(ResourceKind::User, $id, '{"userName":"alice"}', null, 'W/"1"');
            $this->fail('a stale version must be refused');
        } catch (DirectoryException $e) {
            $this->assertSame('version-mismatch', $e->case);
        }
        try {
            $this->dir->replace(ResourceKind::User, 'missing', '{"userName":"x"}', null, null);
            $this->fail('replacing nothing is not-found');
        } catch (DirectoryException $e) {
            $this->assertSame('not-found', $e->case);
        }

        $cms = $this->dir->pdo()->query('SELECT name, mail, active FROM users')->fetchAll(\PDO::FETCH_ASSOC);
        $this->assertSame([['name' => 'Alice', 'mail' => 'Alice@example.com', 'active' => 1]], $cms, 'the CMS user beside the SCIM one');

        $group = $this->dir->create(ResourceKind::Group, (string) json_encode(['displayName' => 'Editors', 'members' => [['value' => $id]]]), null);
        $this->assertTrue($this->dir->delete(ResourceKind::User, $id));
        $this->assertFalse($this->dir->delete(ResourceKind::User, $id));
        $this->assertSame([], $this->dir->pdo()->query('SELECT * FROM users')->fetchAll(), 'the CMS user went too');
        $g = $this->dir->get(ResourceKind::Group, $group->id);
        $this->assertSame([], json_decode($g->json, true)['members'], 'and its group membership');
        $this->assertSame('W/"2"', $g->version);
    }

    public function testQueriesUseTheComponentsFilterSortAndPaging(): void
    {
        foreach ([['carol', 'Danvers', 'e3'], ['alice', 'Liddell', 'e1'], ['bob', 'Builder', 'e2'], ['dave', 'Bowman', 'e4', false]] as $u) {
            $this->add(...$u);
        }
        $this->assertSame(['alice'], $this->names(new Search('userName eq "ALICE"', 1, 10, null, false)), 'indexed, case-insensitive');
        $this->assertSame(['bob'], $this->names(new Search('externalId eq "e2"', 1, 10, null, false)));
        $this->assertSame(['bob', 'dave'], $this->names(new Search('name.familyName sw "B"', 1, 10, 'userName', false)));
        $this->assertSame(['dave', 'bob'], $this->names(new Search('name.familyName sw "B"', 1, 10, 'userName', true)));
        $this->assertSame(['dave'], $this->names(new Search('active eq false', 1, 10, null, false)));
        $this->assertSame(['alice'], $this->names(new Search('emails[type eq "work" and value co "ali"]', 1, 10, null, false)));
        $this->assertSame(['carol', 'alice', 'bob', 'dave'], $this->names(new Search(null, 1, 10, null, false)), 'stable (insertion) order');
        $this->assertSame(['bob', 'carol'], $this->names(new Search(null, 2, 2, 'userName', false)));
        $page = $this->dir->query(ResourceKind::User, new Search('userName pr', 3, 0, null, false));
        $this->assertSame(4, $page->totalResults);
        $this->assertSame([], $page->resources, 'count 0 asks only for the total');
        $page = $this->dir->query(ResourceKind::User, new Search(null, 4, 10, null, false));
        $this->assertSame(4, $page->totalResults);
        $this->assertCount(1, $page->resources);
        try {
            $this->dir->query(ResourceKind::User, new Search('userName eq', 1, 10, null, false));
            $this->fail('a broken filter must be refused');
        } catch (DirectoryException $e) {
            $this->assertSame('invalid-filter', $e->case);
            $this->assertNotSame('', $e->detail);
        }
    }

    /** @param list<string> $members */
    private function group(string $name, array $members): string
    {
        $json = (string) json_encode([
            'schemas' => ['urn:ietf:params:scim:schemas:core:2.0:Group'],
            'displayName' => $name,
            'members' => array_map(static fn (string $m): array => ['value' => $m], $members),
        ]);
        return $this->dir->create(ResourceKind::Group, $json, null)->id;
    }

    /** @return list<string> displayNames of the groups a filter finds */
    private function groupNames(string $filter): array
    {
        $page = $this->dir->query(ResourceKind::Group, new Search($filter, 1, 100, 'displayName', false));
        return array_map(static fn ($r): string => json_decode($r->json, true)['displayName'], $page->resources);
    }

    public function testAUsersGroupsAreFoundThroughTheMembershipIndex(): void
    {
        $ann = $this->add('ann', 'A', 'e1');
        $bob = $this->add('bob', 'B', 'e2');
        $both = $this->group('both', [$ann, $bob]);
        $onlyBob = $this->group('only-bob', [$bob]);
        $this->group('empty', []);
        $of = static fn (string $id): string => "members[value eq \"{$id}\"]";
        $this->assertSame(['both', 'only-bob'], $this->groupNames($of($bob)));
        $this->assertSame(['both'], $this->groupNames($of($ann)));
        $this->assertSame(['both'], $this->groupNames("members.value eq \"{$ann}\""), 'the other form');
        $this->assertSame(['both'], $this->groupNames($of(strtoupper($ann))), 'case-insensitive, as the filter engine decides');
        $this->assertSame([], $this->groupNames($of('nobody')));
        $json = (string) json_encode(['schemas' => ['urn:ietf:params:scim:schemas:core:2.0:Group'], 'displayName' => 'both', 'members' => [['value' => $ann]]]);
        $this->dir->replace(ResourceKind::Group, $both, $json, null, null);
        $this->assertSame(['only-bob'], $this->groupNames($of($bob)), 'a replace moves the index');
        $this->dir->delete(ResourceKind::Group, $onlyBob);
        $this->assertSame([], $this->groupNames($of($bob)));
        $this->assertTrue($this->dir->delete(ResourceKind::User, $ann));
        $this->assertSame([], $this->groupNames($of($ann)), 'a deleted user leaves their groups');
        $this->assertStringNotContainsString($ann, $this->dir->get(ResourceKind::Group, $both)->json);
        $this->assertSame(0, (int) $this->dir->pdo()->query('SELECT COUNT(*) FROM scim_group_members')->fetchColumn());
    }

    public function testADatabaseWithoutTheMembershipIndexGetsOneFilledFromItsGroups(): void
    {
        $path = Peers::tempDir('directory-old') . '/d.db';
        $dir = PdoSqliteDirectory::open($path, Peers::runtime());
        $this->dir = $dir;
        $ann = $this->add('ann', 'A', 'e1');
        $this->group('staff', [$ann]);
        $dir->pdo()->exec('DROP TABLE scim_group_members');
        $this->dir = PdoSqliteDirectory::open($path, Peers::runtime());
        $this->assertSame(['staff'], $this->groupNames("members[value eq \"{$ann}\"]"));
        $this->assertSame(1, (int) $this->dir->pdo()->query('SELECT COUNT(*) FROM scim_group_members')->fetchColumn());
        $this->assertSame(['staff'], $this->groupNames('members[value eq "' . strtoupper($ann) . '"]'), 'case-insensitive, as the filter engine decides');

        // As a database written before `member_value`: the index is rebuilt with it.
        $this->dir->pdo()->exec("DROP TABLE scim_group_members;
            CREATE TABLE scim_group_members (group_id TEXT NOT NULL, member_key TEXT NOT NULL,
                PRIMARY KEY (group_id, member_key)) WITHOUT ROWID;
            INSERT INTO scim_group_members SELECT id, 'stale' FROM scim_groups");
        $this->dir = PdoSqliteDirectory::open($path, Peers::runtime());
        $rows = $this->dir->pdo()->query('SELECT member_key, member_value FROM scim_group_members')->fetchAll(\PDO::FETCH_ASSOC);
        $this->assertSame([['member_key' => strtolower($ann), 'member_value' => $ann]], $rows, 'the stale rows replaced by the exact value');
        $this->assertSame(['staff'], $this->groupNames("members[value eq \"{$ann}\"]"));
        $page = $this->dir->query(ResourceKind::Group, new Search("members[value eq \"{$ann}\"]", 1, 10, null, false));
        $this->assertSame(1, $page->totalResults, 'the unsorted lookup, from the index');
        $this->assertSame(['staff'], array_map(static fn ($r): string => json_decode($r->json, true)['displayName'], $page->resources));
    }

    /**
     * `members[value eq "<id>"]` unsorted (how the component reads a user's groups): paged
     * from the index when every candidate holds the exact value, by the filter engine when
     * one holds a case variant; both give what the sorted query (always the engine) gives.
     */
    public function testAMemberLookupIsPagedFromTheIndexAndAgreesWithSelect(): void
    {
        $ann = $this->add('ann', 'A', 'e1');
        $bob = $this->add('bob', 'B', 'e2');
        $ids = [];
        foreach (['g1', 'g2', 'g3', 'g4', 'g5'] as $name) {
            $ids[$name] = $this->group($name, [$ann]);
        }
        $this->group("bob's", [$bob]);
        /** @return array{0: int, 1: list<string>, 2: list<string>} total, displayNames, ids */
        $page = function (string $value, int $start, int $count): array {
            $page = $this->dir->query(ResourceKind::Group, new Search("members[value eq \"{$value}\"]", $start, $count, null, false));
            return [
                $page->totalResults,
                array_map(static fn ($r): string => json_decode($r->json, true)['displayName'], $page->resources),
                array_map(static fn ($r): string => $r->id, $page->resources),
            ];
        };
        $this->assertSame([5, ['g1', 'g2', 'g3', 'g4', 'g5'], array_values($ids)], $page($ann, 1, 100));
        $this->assertSame([5, ['g2', 'g3'], [$ids['g2'], $ids['g3']]], $page($ann, 2, 2));
        $this->assertSame([5, ['g5'], [$ids['g5']]], $page($ann, 5, 10));
        $this->assertSame([5, [], []], $page($ann, 6, 10));
        $this->assertSame([5, [], []], $page($ann, 1, 0), 'count 0 asks only for the total');
        $this->assertSame([0, [], []], $page('nobody', 1, 10));
        $stored = $this->dir->get(ResourceKind::Group, $ids['g3']);
        $this->assertSame($stored->version, $this->dir->query(ResourceKind::Group, new Search("members[value eq \"{$ann}\"]", 3, 1, null, false))->resources[0]->version);
        $this->assertSame([$ann], array_column($this->dir->pdo()->query("SELECT DISTINCT member_value FROM scim_group_members WHERE member_key = '" . strtolower($ann) . "'")->fetchAll(\PDO::FETCH_ASSOC), 'member_value'));

        // The index answers, not the groups' JSON: a group rewritten behind the directory's
        // back (no members) is still in the unsorted page, but not in the sorted one.
        $pdo = $this->dir->pdo();
        $json = $pdo->query("SELECT json FROM scim_groups WHERE id = '{$ids['g5']}'")->fetchColumn();
        $pdo->prepare('UPDATE scim_groups SET json = ? WHERE id = ?')->execute(['{"displayName":"g5"}', $ids['g5']]);
        $this->assertSame([5, ['g1', 'g2', 'g3', 'g4', 'g5'], array_values($ids)], $page($ann, 1, 100));
        $this->assertSame(['g1', 'g2', 'g3', 'g4'], $this->groupNames("members[value eq \"{$ann}\"]"));
        $pdo->prepare('UPDATE scim_groups SET json = ? WHERE id = ?')->execute([$json, $ids['g5']]);

        // A group holding a case variant of the value: not exact, so the filter engine
        // decides, and the unsorted and sorted queries agree on every lookup.
        $variant = strtoupper($ann);
        $this->group('g0-variant', [$variant]);
        foreach ([$ann, $variant] as $value) {
            [$total, $unsorted] = $page($value, 1, 100);
            $sorted = $this->groupNames("members[value eq \"{$value}\"]");
            sort($unsorted);
            $this->assertSame($sorted, $unsorted, $value);
            $this->assertSame(count($sorted), $total, $value);
            $this->assertSame(['g0-variant', 'g1', 'g2', 'g3', 'g4', 'g5'], $sorted, 'a member value compares case-insensitively');
        }
    }

    /**
     * A login name a CMS user (one the CMS made, not the identity provider) already holds,
     * in any case, is a conflict (409 uniqueness), on a create and on a replace, and leaves
     * nothing behind: the same answer as PdoDirectory and the Rust host's directories.
     */
    public function testACmsNameClashIsAConflictAndLeavesNothing(): void
    {
        $pdo = $this->dir->pdo();
        $pdo->exec("INSERT INTO users (id, name, mail, fields, active) VALUES ('cms-1', 'Site.Editor', 'ed@cms.example', '{}', 1)");
        $clash = static fn (string $name): CmsUser => new CmsUser('', ['name' => $name, 'mail' => 'x@idp.example'], true);
        try {
            $this->dir->create(ResourceKind::User, '{"userName":"site.editor","password":"s3cret-Pass"}', $clash('SITE.EDITOR'));
            $this->fail('a CMS user holds the name');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
            $this->assertStringNotContainsString('s3cret', $e->getMessage());
        }
        $this->assertSame(0, (int) $pdo->query('SELECT COUNT(*) FROM scim_users')->fetchColumn());

        $bobId = $this->add('bob', 'Builder', 'e1');
        $bob = $this->dir->get(ResourceKind::User, $bobId);
        try {
            $this->dir->replace(ResourceKind::User, $bobId, '{"userName":"bob","title":"moved"}', $clash('site.editor'), $bob->version);
            $this->fail('a CMS user holds the name');
        } catch (DirectoryException $e) {
            $this->assertSame('conflict', $e->case);
        }
        $kept = $this->dir->get(ResourceKind::User, $bobId);
        $this->assertSame([$bob->version, $bob->json], [$kept->version, $kept->json]);
        $this->assertSame(
            [$bobId => 'bob', 'cms-1' => 'Site.Editor'],
            $pdo->query('SELECT id, name FROM users ORDER BY name')->fetchAll(\PDO::FETCH_KEY_PAIR),
        );
        // Its own name in another case is no clash.
        $this->dir->replace(ResourceKind::User, $bobId, '{"userName":"Bob"}', $clash('Bob'), $bob->version);
        $this->assertSame('Bob', $pdo->query("SELECT name FROM users WHERE id = '{$bobId}'")->fetchColumn());
    }
}
