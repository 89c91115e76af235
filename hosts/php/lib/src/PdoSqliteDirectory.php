<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\PdoDirectoryShared;

/**
 * A {@see Directory} in SQLite through PDO: the store behind a PHP-served SCIM server.
 *
 * Tables (created when missing):
 * - `scim_users`, `scim_groups`: id, version, created, last_modified, unique_key
 *   (lower-cased userName / displayName, unique: RFC 7643 makes them case-insensitive),
 *   external_id, json;
 * - the CMS user table (option `cms_table`, default `users`; null to keep none): id, name
 *   (unique, case-insensitive), mail, fields (JSON), active. Each SCIM user is kept there
 *   as a normal CMS user, from the component's reverse mapping (`cms`): an identity
 *   provider's users appear in the CMS, `active=false` blocks them, a DELETE removes them.
 *
 * - `scim_group_members`: a row per group and member value (lower-cased), with the first
 *   value of that key as stored (`member_value`), the index a user's `groups` is found by:
 *   every read of a user asks for the groups whose `members[value eq "<id>"]`, which without
 *   it loaded every group. When every candidate holds the value asked exactly, that page is
 *   cut from the index without parsing a group.
 *
 * Searches: equality on userName/displayName, id or externalId, and a group's member value,
 * run as SQL; anything else loads the kind's rows. Filtering, sorting and paging are then done by the component's own
 * filter engine ({@see Runtime::select()}), so PHP never disagrees with the guest on what a
 * filter means. An unfiltered, unsorted page is a plain LIMIT/OFFSET.
 *
 * Every write is one transaction: a SCIM resource is never stored without its CMS user.
 *
 * Passwords (RFC 7643: write-only, never returned): a User's `password` is stored only as a
 * `password_hash()` in `scim_users.password_hash`, never in the resource's JSON, so no read
 * returns it; {@see verifyPassword()} checks one for the CMS. Opening a database whose rows
 * still hold a clear `password` (written before this) hashes and removes it; SQLite's
 * `secure_delete` overwrites the old bytes. As a {@see PasswordHashingDirectory}, it makes
 * {@see ScimServer} declare `directory.hashes_passwords`, so the component hands it passwords.
 */
final class PdoSqliteDirectory implements PasswordHashingDirectory
{
    use PdoDirectoryShared;

    /** The longest member value the index holds: any. */
    private const MEMBER_KEY_MAX = PHP_INT_MAX;

    private readonly ?string $cmsTable;

    /**
     * @param array{cms_table?: string|null} $options
     */
    public function __construct(private readonly \PDO $pdo, private readonly Runtime $runtime, array $options = [])
    {
        $table = array_key_exists('cms_table', $options) ? $options['cms_table'] : 'users';
        if ($table !== null && !preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/', $table)) {
            throw new InvalidArgumentException("cms_table must be a plain SQL identifier, not {$table}");
        }
        $this->cmsTable = $table;
        $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        $pdo->exec('PRAGMA busy_timeout = 10000');
        // Deleted or overwritten content (a clear password being migrated) is zeroed on disk,
        // not left in free pages.
        $pdo->exec('PRAGMA secure_delete = ON');
        $pdo->exec('PRAGMA journal_mode = WAL');
        foreach (['scim_users', 'scim_groups'] as $t) {
            $pdo->exec("CREATE TABLE IF NOT EXISTS {$t} (
                id TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                created TEXT NOT NULL,
                last_modified TEXT NOT NULL,
                unique_key TEXT UNIQUE,
                external_id TEXT,
                json TEXT NOT NULL
            )");
            $pdo->exec("CREATE INDEX IF NOT EXISTS {$t}_external ON {$t}(external_id)");
        }
        $this->ensureMemberIndex();
        $this->ensurePasswordHashes();
        if ($this->cmsTable !== null) {
            $pdo->exec("CREATE TABLE IF NOT EXISTS {$this->cmsTable} (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE COLLATE NOCASE,
                mail TEXT NOT NULL,
                fields TEXT NOT NULL,
                active INTEGER NOT NULL
            )");
        }
    }

    /** Opens (creating if needed) a SQLite file. */
    public static function open(string $path, Runtime $runtime, array $options = []): self
    {
        $dir = dirname($path);
        if (!is_dir($dir)) {
            throw new InvalidArgumentException("the directory for the database {$path} does not exist");
        }
        return new self(new \PDO('sqlite:' . $path), $runtime, $options);
    }

    public function pdo(): \PDO
    {
        return $this->pdo;
    }

    public function query(ResourceKind $kind, Search $search): QueryPage
    {
        $table = self::table($kind);
        $cols = "SELECT id, version, created, last_modified, json FROM {$table}";
        if ($search->filter === null && $search->sortBy === null) {
            $total = (int) $this->pdo->query("SELECT COUNT(*) FROM {$table}")->fetchColumn();
            if ($search->count === 0) {
                return new QueryPage($total, []);
            }
            $stmt = $this->pdo->prepare("{$cols} ORDER BY rowid LIMIT ? OFFSET ?");
            $stmt->execute([$search->count, max(1, $search->startIndex) - 1]);
            return new QueryPage($total, array_map(self::stored(...), $stmt->fetchAll(\PDO::FETCH_ASSOC)));
        }
        // A user's groups, unsorted (how the component asks on every read of a user): paged
        // from the index when every candidate holds the exact value.
        $member = $search->sortBy === null ? self::memberLookup($kind, $search->filter) : null;
        if ($member !== null && ($page = $this->exactMemberPage($member, $search)) !== null) {
            return $page;
        }
        [$where, $arg] = $this->indexedEquality($kind, $search->filter);
        if ($where !== null) {
            $stmt = $this->pdo->prepare("{$cols} WHERE {$where} ORDER BY rowid");
            $stmt->execute([$arg]);
        } else {
            $stmt = $this->pdo->query("{$cols} ORDER BY rowid");
        }
        $candidates = array_map(self::stored(...), $stmt->fetchAll(\PDO::FETCH_ASSOC));
        return $this->runtime->selectStored($kind, $search, $candidates);
    }

    /**
     * The groups with a member whose value is `$value`, paged as `$search` asks, when the
     * index holds that exact value for every candidate (then each is a match under any
     * comparison, case-exact or not, and no group is parsed); null when one holds only a
     * case variant, for the component's filter engine to decide.
     */
    private function exactMemberPage(string $value, Search $search): ?QueryPage
    {
        // CROSS JOIN keeps the index as the outer loop: with a plain JOIN, SQLite may walk
        // every group in rowid order to save the sort (4 times slower in the Rust host with
        // 1,000 groups stored).
        $stmt = $this->pdo->prepare('SELECT g.id, g.version, g.created, g.last_modified, g.json,
                m.member_value IS :value AS exact
            FROM scim_group_members m
            CROSS JOIN scim_groups g ON g.id = m.group_id
            WHERE m.member_key = :key ORDER BY g.rowid');
        $stmt->execute(['value' => $value, 'key' => mb_strtolower($value)]);
        $groups = [];
        foreach ($stmt->fetchAll(\PDO::FETCH_ASSOC) as $row) {
            if ((int) $row['exact'] !== 1) {
                return null;
            }
            $groups[] = self::stored($row);
        }
        $page = array_slice($groups, max(1, $search->startIndex) - 1, max(0, $search->count));
        return new QueryPage(count($groups), $page);
    }

    public function delete(ResourceKind $kind, string $id): bool
    {
        return $this->transaction(function () use ($kind, $id): bool {
            $stmt = $this->pdo->prepare('DELETE FROM ' . self::table($kind) . ' WHERE id = ?');
            $stmt->execute([$id]);
            if ($stmt->rowCount() === 0) {
                return false;
            }
            if ($kind === ResourceKind::Group) {
                $this->pdo->prepare('DELETE FROM scim_group_members WHERE group_id = ?')->execute([$id]);
            }
            if ($kind === ResourceKind::User) {
                if ($this->cmsTable !== null) {
                    $this->pdo->prepare("DELETE FROM {$this->cmsTable} WHERE id = ?")->execute([$id]);
                }
                // Drop the user from the groups it belonged to (rewriting each rewrites its
                // index rows too).
                $groups = $this->pdo->prepare('SELECT id, json FROM scim_groups WHERE id IN
                    (SELECT group_id FROM scim_group_members WHERE member_key = ?)');
                $groups->execute([mb_strtolower($id)]);
                foreach ($groups->fetchAll(\PDO::FETCH_ASSOC) as $g) {
                    $group = self::withoutMember(json_decode((string) $g['json'], true), $id);
                    if ($group === null) {
                        continue;
                    }
                    $text = json_encode($group, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
                    $this->doReplace(ResourceKind::Group, (string) $g['id'], $text, $group, null, null);
                }
            }
            return true;
        });
    }

    /**
     * @param array<string, mixed> $value
     */
    private function doReplace(
        ResourceKind $kind,
        string $id,
        string $json,
        array $value,
        ?CmsUser $cms,
        ?string $ifVersion,
    ): StoredResource {
        $current = $this->get($kind, $id) ?? throw DirectoryException::notFound();
        if ($ifVersion !== null && $ifVersion !== $current->version) {
            throw DirectoryException::versionMismatch();
        }
        $key = self::uniqueKey($kind, $value);
        $this->conflictCheck($kind, $key, $id);
        $now = gmdate('Y-m-d\TH:i:s\Z');
        $this->pdo->prepare('UPDATE ' . self::table($kind)
            . ' SET version = version + 1, last_modified = ?, unique_key = ?, external_id = ?, json = ? WHERE id = ?')
            ->execute([$now, $key, self::externalId($value), $json, $id]);
        if ($kind === ResourceKind::Group) {
            $this->indexMembers($id, $value);
        }
        $this->mirror($id, $value, $cms);
        return $this->get($kind, $id) ?? throw DirectoryException::notFound();
    }

    /**
     * Adds `scim_users.password_hash` when missing, and hashes and removes any clear `password`
     * still in a stored user (rows written before passwords were hashed).
     */
    private function ensurePasswordHashes(): void
    {
        $columns = $this->pdo->query('PRAGMA table_info(scim_users)')->fetchAll(\PDO::FETCH_COLUMN, 1);
        if (!in_array('password_hash', $columns, true)) {
            $this->pdo->exec('ALTER TABLE scim_users ADD COLUMN password_hash TEXT');
        }
        $rows = $this->pdo->query("SELECT id, json FROM scim_users WHERE json LIKE '%\"password\"%'")
            ->fetchAll(\PDO::FETCH_ASSOC);
        if ($rows === []) {
            return;
        }
        $this->transaction(function () use ($rows): void {
            $update = $this->pdo->prepare('UPDATE scim_users SET json = ?, password_hash = ? WHERE id = ?');
            foreach ($rows as $row) {
                $json = (string) $row['json'];
                $value = json_decode($json, true);
                if (!is_array($value)) {
                    continue;
                }
                $cms = null;
                $hash = self::takePassword(ResourceKind::User, $json, $value, $cms);
                if ($hash !== null) {
                    $update->execute([$json, $hash, $row['id']]);
                }
            }
        });
        // The old pages in the write-ahead log go too.
        $this->pdo->query('PRAGMA wal_checkpoint(TRUNCATE)')->fetchAll();
    }

    /**
     * Keeps the CMS user beside a stored SCIM user; the CMS id is the SCIM id.
     *
     * @param array<string, mixed> $scim
     */
    private function mirror(string $id, array $scim, ?CmsUser $cms): void
    {
        if ($cms === null || $this->cmsTable === null || ($record = self::cmsRecord($cms, $scim)) === null) {
            return;
        }
        [$name, $mail, $fieldsJson] = $record;
        $other = $this->pdo->prepare("SELECT id FROM {$this->cmsTable} WHERE name = ? COLLATE NOCASE AND id <> ?");
        $other->execute([$name, $id]);
        if ($other->fetchColumn() !== false) {
            throw DirectoryException::conflict("a CMS user named \"{$name}\" already exists");
        }
        $this->pdo->prepare("INSERT INTO {$this->cmsTable} (id, name, mail, fields, active) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, mail = excluded.mail, fields = excluded.fields,
                active = excluded.active")
            ->execute([$id, $name, $mail, $fieldsJson, $cms->active ? 1 : 0]);
    }

    /**
     * Writes a group's rows of the membership index, replacing its old ones. Lower-cased, so
     * the index finds a superset of what a case-insensitive `eq` matches; the component's
     * filter engine still decides. Beside each key, the first value of it as stored
     * (`INSERT OR IGNORE` keeps it for a later case variant): a group holding the value asked
     * exactly matches under any comparison, so {@see exactMemberPage()} needs no parse.
     *
     * @param array<string, mixed> $group
     */
    private function indexMembers(string $groupId, array $group): void
    {
        $this->pdo->prepare('DELETE FROM scim_group_members WHERE group_id = ?')->execute([$groupId]);
        $insert = $this->pdo->prepare(
            'INSERT OR IGNORE INTO scim_group_members (group_id, member_key, member_value) VALUES (?, ?, ?)'
        );
        foreach (is_array($group['members'] ?? null) ? $group['members'] : [] as $member) {
            if (is_array($member) && is_string($member['value'] ?? null)) {
                $insert->execute([$groupId, mb_strtolower($member['value']), $member['value']]);
            }
        }
    }

    /**
     * Creates the membership index when the file has none, or has one without `member_value`
     * (a database written before either), and fills it from the groups already stored, in
     * one immediate transaction: processes opening the file at once build it once.
     */
    private function ensureMemberIndex(): void
    {
        // A plain read first: a directory is made for every PHP request, and only a file
        // without the current index needs the write lock.
        $current = "SELECT 1 FROM pragma_table_info('scim_group_members') WHERE name = 'member_value'";
        if ($this->pdo->query($current)->fetchColumn() !== false) {
            return;
        }
        $own = !$this->pdo->inTransaction();
        if ($own) {
            $this->pdo->exec('BEGIN IMMEDIATE');
        }
        try {
            if ($this->pdo->query($current)->fetchColumn() === false) {
                // An old index (no exact values) is rebuilt rather than altered: its rows
                // cannot say which value each key came from.
                $this->pdo->exec('DROP TABLE IF EXISTS scim_group_members');
                $this->pdo->exec('CREATE TABLE scim_group_members (
                    group_id TEXT NOT NULL,
                    member_key TEXT NOT NULL,
                    member_value TEXT,
                    PRIMARY KEY (group_id, member_key)
                ) WITHOUT ROWID');
                $this->pdo->exec('CREATE INDEX scim_group_members_key ON scim_group_members(member_key)');
                foreach ($this->pdo->query('SELECT id, json FROM scim_groups')->fetchAll(\PDO::FETCH_ASSOC) as $g) {
                    $group = json_decode((string) $g['json'], true);
                    // A group that is not JSON has no members to index; reads skip it too.
                    if (is_array($group)) {
                        $this->indexMembers((string) $g['id'], $group);
                    }
                }
            }
            if ($own) {
                $this->pdo->exec('COMMIT');
            }
        } catch (\Throwable $e) {
            if ($own) {
                $this->pdo->exec('ROLLBACK');
            }
            throw $e;
        }
    }

    /**
     * @template T
     * @param callable(): T $work
     * @return T
     */
    private function transaction(callable $work): mixed
    {
        if ($this->pdo->inTransaction()) {
            return $work();
        }
        $this->pdo->beginTransaction();
        try {
            $result = $work();
            $this->pdo->commit();
            return $result;
        } catch (\Throwable $e) {
            $this->pdo->rollBack();
            // A uniqueness constraint another process won between our check and our write.
            if ($e instanceof \PDOException && $e->getCode() === '23000') {
                throw DirectoryException::conflict('a unique value is already taken (' . $e->getMessage() . ')');
            }
            throw $e;
        }
    }

    /** @param array<string, mixed> $value */
    private static function uniqueKey(ResourceKind $kind, array $value): ?string
    {
        $v = $value[$kind === ResourceKind::User ? 'userName' : 'displayName'] ?? null;
        return is_string($v) ? mb_strtolower($v) : null;
    }

    /** @param array<string, mixed> $value */
    private static function externalId(array $value): ?string
    {
        return is_string($value['externalId'] ?? null) ? $value['externalId'] : null;
    }

    private static function table(ResourceKind $kind): string
    {
        return $kind === ResourceKind::User ? 'scim_users' : 'scim_groups';
    }

    private static function membersTable(): string
    {
        return 'scim_group_members';
    }
}
