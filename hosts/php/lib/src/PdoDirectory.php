<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\PdoDirectoryShared;
use ScimProvisioner\Internal\PdoSchema;

/**
 * A {@see Directory} in MySQL/MariaDB (≥ 10.6) or PostgreSQL (≥ 15) through PDO: the store
 * behind a PHP-served SCIM server that several PHP processes (and several web servers
 * behind a load balancer) share. The same logical store as {@see PdoSqliteDirectory}.
 *
 * Tables (`prefix` default `scim_`; created and migrated on open, the version recorded in
 * `{prefix}schema`):
 * - `{prefix}users`, `{prefix}groups`: id, seq (insertion order, for stable pages), version,
 *   created, last_modified, unique_key (lower-cased userName / displayName, UNIQUE: RFC 7643
 *   makes them case-insensitive), external_id, json; users also password_hash;
 * - `{prefix}group_members`: a row per group and lower-cased member value, with the first
 *   value of that key as stored: how a user's `groups` is found without reading every group;
 * - the CMS user table (option `cms_table`, default `{prefix}cms_users`; null for none): id,
 *   name, name_key (lower-cased, UNIQUE), mail, fields (JSON), active. Each SCIM user is kept
 *   there as a CMS user, from the component's reverse mapping.
 *
 * Key columns compare byte for byte (`utf8mb4_bin` on MariaDB): the store lower-cases what is
 * case-insensitive itself, so MariaDB's accent-folding collations never make `é` and `e` the
 * same userName.
 *
 * **Across processes.** Every write is one transaction (a SCIM resource never without its
 * CMS user). A replace locks its row (`SELECT … FOR UPDATE`) before comparing `If-Match`, so
 * of two processes replacing one version at once, the second sees the first's new version
 * and gets `version-mismatch` (412): never do both win. Uniqueness is the database's UNIQUE
 * index: a create that races another for one userName gets `conflict` (409). A deadlock or
 * serialization failure is retried (three times) before it is reported as `unavailable`.
 *
 * Searches: equality on userName/displayName, id, externalId and a group's member value run
 * as SQL; anything else loads the kind's rows, and the component's filter engine filters,
 * sorts and pages ({@see Runtime::selectStored()}).
 *
 * Passwords: a User's `password` is kept only as `password_hash()` in `password_hash`, never
 * in the JSON; {@see verifyPassword()} checks one for the CMS.
 */
final class PdoDirectory implements PasswordHashingDirectory
{
    use PdoDirectoryShared;

    public const SCHEMA_VERSION = 1;

    /** The longest member value the index holds (its key's limit). */
    private const MEMBER_KEY_MAX = 700;

    private const TRIES = 3;

    private readonly string $driver;
    private readonly string $prefix;
    private readonly ?string $cmsTable;

    /**
     * @param array{prefix?: string, cms_table?: string|null} $options
     */
    public function __construct(private readonly \PDO $pdo, private readonly Runtime $runtime, array $options = [])
    {
        $this->driver = PdoSchema::driver($pdo);
        $this->prefix = PdoSchema::prefix($options['prefix'] ?? 'scim_');
        $table = array_key_exists('cms_table', $options) ? $options['cms_table'] : $this->prefix . 'cms_users';
        if ($table !== null && !preg_match('/^[A-Za-z_][A-Za-z0-9_]{0,63}$/', $table)) {
            throw new InvalidArgumentException("cms_table must be a plain SQL identifier, not {$table}");
        }
        $this->cmsTable = $table;
        $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        PdoSchema::migrate($pdo, $this->prefix, 'directory', $this->steps());
    }

    /**
     * Opens a directory on a DSN (`mysql:host=…;dbname=…;charset=utf8mb4` or
     * `pgsql:host=…;dbname=…`), through {@see PdoConnection}: TLS is asked for in the DSN
     * (`sslmode=verify-full;sslrootcert=…`, `ssl-mode=VERIFY_IDENTITY;ssl-ca=…`) and always
     * verified. The password is passed to PDO only, never into a message.
     *
     * @param array{prefix?: string, cms_table?: string|null} $options
     * @throws InvalidArgumentException TLS settings that would not verify
     */
    public static function connect(
        #[\SensitiveParameter] string $dsn,
        ?string $user,
        #[\SensitiveParameter] ?string $password,
        Runtime $runtime,
        array $options = [],
    ): self {
        try {
            $pdo = PdoConnection::open($dsn, $user, $password);
        } catch (DatabaseConnectionException $e) {
            throw new DirectoryException('unavailable', $e->getMessage());
        }
        return new self($pdo, $runtime, $options);
    }

    public function pdo(): \PDO
    {
        return $this->pdo;
    }

    /** The version of the directory's tables recorded in the database. */
    public function schemaVersion(): int
    {
        return PdoSchema::version($this->pdo, $this->prefix, 'directory');
    }

    public function query(ResourceKind $kind, Search $search): QueryPage
    {
        $table = $this->table($kind);
        $cols = "SELECT id, version, created, last_modified, json FROM {$table}";
        if ($search->filter === null && $search->sortBy === null) {
            $total = (int) $this->pdo->query("SELECT COUNT(*) FROM {$table}")->fetchColumn();
            if ($search->count === 0) {
                return new QueryPage($total, []);
            }
            $stmt = $this->pdo->prepare("{$cols} ORDER BY seq LIMIT ? OFFSET ?");
            $stmt->bindValue(1, max(0, $search->count), \PDO::PARAM_INT);
            $stmt->bindValue(2, max(1, $search->startIndex) - 1, \PDO::PARAM_INT);
            $stmt->execute();
            return new QueryPage($total, array_map(self::stored(...), $stmt->fetchAll(\PDO::FETCH_ASSOC)));
        }
        $member = $search->sortBy === null ? self::memberLookup($kind, $search->filter) : null;
        if ($member !== null && ($page = $this->exactMemberPage($member, $search)) !== null) {
            return $page;
        }
        [$where, $arg] = $this->indexedEquality($kind, $search->filter);
        if ($where !== null) {
            $stmt = $this->pdo->prepare("{$cols} WHERE {$where} ORDER BY seq");
            $stmt->execute([$arg]);
        } else {
            $stmt = $this->pdo->query("{$cols} ORDER BY seq");
        }
        $candidates = array_map(self::stored(...), $stmt->fetchAll(\PDO::FETCH_ASSOC));
        return $this->runtime->selectStored($kind, $search, $candidates);
    }

    /**
     * The groups with a member whose value is exactly `$value`, paged as asked; null when
     * one holds only a case variant (the component's filter engine decides then).
     */
    private function exactMemberPage(string $value, Search $search): ?QueryPage
    {
        $p = $this->prefix;
        $stmt = $this->pdo->prepare("SELECT g.id, g.version, g.created, g.last_modified, g.json, m.member_value
            FROM {$p}group_members m JOIN {$p}groups g ON g.id = m.group_id
            WHERE m.member_key = ? ORDER BY g.seq");
        $stmt->execute([mb_strtolower($value)]);
        $groups = [];
        foreach ($stmt->fetchAll(\PDO::FETCH_ASSOC) as $row) {
            if ($row['member_value'] !== $value) {
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
            $p = $this->prefix;
            $stmt = $this->pdo->prepare('DELETE FROM ' . $this->table($kind) . ' WHERE id = ?');
            $stmt->execute([$id]);
            if ($stmt->rowCount() === 0) {
                return false;
            }
            if ($kind === ResourceKind::Group) {
                $this->pdo->prepare("DELETE FROM {$p}group_members WHERE group_id = ?")->execute([$id]);
            }
            if ($kind === ResourceKind::User) {
                if ($this->cmsTable !== null) {
                    $this->pdo->prepare("DELETE FROM {$this->cmsTable} WHERE id = ?")->execute([$id]);
                }
                // Takes the user out of its groups, each rewritten under its row lock.
                $groups = $this->pdo->prepare("SELECT id FROM {$p}groups WHERE id IN
                    (SELECT group_id FROM {$p}group_members WHERE member_key = ?) ORDER BY id");
                $groups->execute([mb_strtolower($id)]);
                foreach ($groups->fetchAll(\PDO::FETCH_COLUMN) as $groupId) {
                    $g = $this->lockedRow(ResourceKind::Group, (string) $groupId);
                    $group = self::withoutMember($g === null ? null : json_decode((string) $g['json'], true), $id);
                    if ($group === null) {
                        continue;
                    }
                    $text = json_encode($group, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
                    $this->doReplace(ResourceKind::Group, (string) $groupId, $text, $group, null, null);
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
        // The row lock first: a concurrent replace of the same resource waits here and then
        // compares against the version this one writes.
        $current = $this->lockedRow($kind, $id) ?? throw DirectoryException::notFound();
        if ($ifVersion !== null && $ifVersion !== 'W/"' . $current['version'] . '"') {
            throw DirectoryException::versionMismatch();
        }
        $key = self::uniqueKey($kind, $value);
        $this->conflictCheck($kind, $key, $id);
        $now = gmdate('Y-m-d\TH:i:s\Z');
        $this->pdo->prepare('UPDATE ' . $this->table($kind)
            . ' SET version = version + 1, last_modified = ?, unique_key = ?, external_id = ?, json = ? WHERE id = ?')
            ->execute([$now, $key, self::externalId($value), $json, $id]);
        if ($kind === ResourceKind::Group) {
            $this->indexMembers($id, $value);
        }
        $this->mirror($id, $value, $cms);
        $version = (int) $current['version'] + 1;
        return new StoredResource($id, 'W/"' . $version . '"', (string) $current['created'], $now, $json);
    }

    /** @return array<string, mixed>|null the row, locked until the transaction ends */
    private function lockedRow(ResourceKind $kind, string $id): ?array
    {
        $stmt = $this->pdo->prepare(
            'SELECT id, version, created, json FROM ' . $this->table($kind) . ' WHERE id = ? FOR UPDATE'
        );
        $stmt->execute([$id]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC);
        return $row === false ? null : $row;
    }

    /**
     * @param array<string, mixed> $scim
     */
    private function mirror(string $id, array $scim, ?CmsUser $cms): void
    {
        if ($cms === null || $this->cmsTable === null || ($record = self::cmsRecord($cms, $scim)) === null) {
            return;
        }
        [$name, $mail, $fieldsJson] = $record;
        $other = $this->pdo->prepare("SELECT id FROM {$this->cmsTable} WHERE name_key = ? AND id <> ?");
        $other->execute([mb_strtolower($name), $id]);
        if ($other->fetchColumn() !== false) {
            throw DirectoryException::conflict("a CMS user named \"{$name}\" already exists");
        }
        $sql = $this->driver === 'pgsql'
            ? "INSERT INTO {$this->cmsTable} (id, name, name_key, mail, fields, active) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, name_key = EXCLUDED.name_key,
               mail = EXCLUDED.mail, fields = EXCLUDED.fields, active = EXCLUDED.active"
            : "INSERT INTO {$this->cmsTable} (id, name, name_key, mail, fields, active) VALUES (?, ?, ?, ?, ?, ?)
               ON DUPLICATE KEY UPDATE name = VALUES(name), name_key = VALUES(name_key), mail = VALUES(mail),
               fields = VALUES(fields), active = VALUES(active)";
        $this->pdo->prepare($sql)
            ->execute([$id, $name, mb_strtolower($name), $mail, $fieldsJson, $cms->active ? 1 : 0]);
    }

    /**
     * @param array<string, mixed> $group
     */
    private function indexMembers(string $groupId, array $group): void
    {
        $p = $this->prefix;
        $this->pdo->prepare("DELETE FROM {$p}group_members WHERE group_id = ?")->execute([$groupId]);
        $insert = $this->pdo->prepare($this->driver === 'pgsql'
            ? "INSERT INTO {$p}group_members (group_id, member_key, member_value) VALUES (?, ?, ?)
               ON CONFLICT DO NOTHING"
            : "INSERT IGNORE INTO {$p}group_members (group_id, member_key, member_value) VALUES (?, ?, ?)");
        foreach (is_array($group['members'] ?? null) ? $group['members'] : [] as $member) {
            // Longer values are not indexed (the key's limit); a lookup of one reads every group.
            if (is_array($member) && is_string($member['value'] ?? null) && mb_strlen($member['value']) <= 700) {
                $insert->execute([$groupId, mb_strtolower($member['value']), $member['value']]);
            }
        }
    }

    /**
     * Runs $work in a transaction (read committed), retried after a deadlock or serialization
     * failure; a UNIQUE violation another process won becomes `conflict`.
     *
     * @template T
     * @param callable(): T $work
     * @return T
     */
    private function transaction(callable $work): mixed
    {
        if ($this->pdo->inTransaction()) {
            return $work();
        }
        for ($try = 1;; $try++) {
            if ($this->driver === 'mysql') {
                $this->pdo->exec('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
            }
            $this->pdo->beginTransaction();
            try {
                $result = $work();
                $this->pdo->commit();
                return $result;
            } catch (\Throwable $e) {
                if ($this->pdo->inTransaction()) {
                    $this->pdo->rollBack();
                }
                if (!$e instanceof \PDOException) {
                    throw $e;
                }
                $state = (string) $e->getCode();
                if ($state === '23505' || ($state === '23000' && (int) ($e->errorInfo[1] ?? 0) === 1062)) {
                    throw DirectoryException::conflict('a unique value is already taken');
                }
                if (in_array($state, ['40001', '40P01'], true)) {
                    if ($try < self::TRIES) {
                        usleep(random_int(1000, 20000) * $try);
                        continue;
                    }
                    throw new DirectoryException(
                        'unavailable',
                        'the database kept aborting the write (deadlock); try again',
                    );
                }
                throw $e;
            }
        }
    }

    /** @param array<string, mixed> $value */
    private static function uniqueKey(ResourceKind $kind, array $value): ?string
    {
        $v = $value[$kind === ResourceKind::User ? 'userName' : 'displayName'] ?? null;
        if (!is_string($v)) {
            return null;
        }
        $key = mb_strtolower($v);
        if (strlen($key) > 760) {
            // The UNIQUE index's limit (3,072 bytes on MariaDB): longer names are refused, never cut.
            throw new DirectoryException('other', 'userName/displayName is longer than 760 bytes');
        }
        return $key;
    }

    /** @param array<string, mixed> $value */
    private static function externalId(array $value): ?string
    {
        if (!is_string($value['externalId'] ?? null)) {
            return null;
        }
        if (strlen($value['externalId']) > 760) {
            throw new DirectoryException('other', 'externalId is longer than 760 bytes');
        }
        return $value['externalId'];
    }

    private function table(ResourceKind $kind): string
    {
        return $this->prefix . ($kind === ResourceKind::User ? 'users' : 'groups');
    }

    private function membersTable(): string
    {
        return $this->prefix . 'group_members';
    }

    /** @return array<int, list<string>> */
    private function steps(): array
    {
        $p = $this->prefix;
        $cms = $this->cmsTable;
        if ($this->driver === 'pgsql') {
            $resource = static fn (string $t, string $extra): string => "CREATE TABLE IF NOT EXISTS {$t} (
                id VARCHAR(64) PRIMARY KEY,
                seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
                version BIGINT NOT NULL,
                created VARCHAR(32) NOT NULL,
                last_modified VARCHAR(32) NOT NULL,
                unique_key VARCHAR(760) UNIQUE,
                external_id VARCHAR(760),
                json TEXT NOT NULL{$extra}
            )";
            $steps = [
                $resource("{$p}users", ",\n                password_hash VARCHAR(255)"),
                "CREATE INDEX IF NOT EXISTS {$p}users_external ON {$p}users (external_id)",
                $resource("{$p}groups", ''),
                "CREATE INDEX IF NOT EXISTS {$p}groups_external ON {$p}groups (external_id)",
                "CREATE TABLE IF NOT EXISTS {$p}group_members (
                    group_id VARCHAR(64) NOT NULL,
                    member_key VARCHAR(700) NOT NULL,
                    member_value VARCHAR(700),
                    PRIMARY KEY (group_id, member_key)
                )",
                "CREATE INDEX IF NOT EXISTS {$p}group_members_key ON {$p}group_members (member_key)",
            ];
            if ($cms !== null) {
                $steps[] = "CREATE TABLE IF NOT EXISTS {$cms} (
                    id VARCHAR(64) PRIMARY KEY,
                    name TEXT NOT NULL,
                    name_key VARCHAR(760) NOT NULL UNIQUE,
                    mail TEXT NOT NULL,
                    fields TEXT NOT NULL,
                    active SMALLINT NOT NULL
                )";
            }
            return [1 => $steps];
        }
        $bin = 'CHARACTER SET utf8mb4 COLLATE utf8mb4_bin';
        $resource = static fn (string $t, string $extra): string => "CREATE TABLE IF NOT EXISTS {$t} (
            id VARCHAR(64) {$bin} NOT NULL PRIMARY KEY,
            seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE,
            version BIGINT NOT NULL,
            created VARCHAR(32) NOT NULL,
            last_modified VARCHAR(32) NOT NULL,
            unique_key VARCHAR(760) {$bin} NULL UNIQUE,
            external_id VARCHAR(760) {$bin} NULL,
            json LONGTEXT NOT NULL{$extra},
            KEY {$t}_external (external_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        $steps = [
            $resource("{$p}users", ",\n            password_hash VARCHAR(255) NULL"),
            $resource("{$p}groups", ''),
            "CREATE TABLE IF NOT EXISTS {$p}group_members (
                group_id VARCHAR(64) {$bin} NOT NULL,
                member_key VARCHAR(700) {$bin} NOT NULL,
                member_value VARCHAR(700) {$bin} NULL,
                PRIMARY KEY (group_id, member_key),
                KEY {$p}group_members_key (member_key)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ];
        if ($cms !== null) {
            $steps[] = "CREATE TABLE IF NOT EXISTS {$cms} (
                id VARCHAR(64) {$bin} NOT NULL PRIMARY KEY,
                name TEXT NOT NULL,
                name_key VARCHAR(760) {$bin} NOT NULL UNIQUE,
                mail TEXT NOT NULL,
                fields LONGTEXT NOT NULL,
                active TINYINT NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        }
        return [1 => $steps];
    }
}
