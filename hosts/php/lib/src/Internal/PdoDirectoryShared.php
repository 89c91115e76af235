<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\CmsUser;
use ScimProvisioner\DirectoryException;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\StoredResource;

/**
 * What {@see \ScimProvisioner\PdoDirectory} (MariaDB/PostgreSQL) and
 * {@see \ScimProvisioner\PdoSqliteDirectory} (SQLite) do the same way: reads by id, the
 * create and replace flow, passwords (taken out of the JSON, kept as a hash, verified),
 * uniqueness checks, the SQL a filter's indexed equality becomes, and row and JSON helpers.
 *
 * The class using it provides `$pdo`, `table()`, `membersTable()`, `transaction()`,
 * `doReplace()`, `indexMembers()`, `mirror()`, `uniqueKey()`, `externalId()` and the
 * constant `MEMBER_KEY_MAX` (the longest member value its index holds).
 *
 * @internal
 */
trait PdoDirectoryShared
{
    /** A hash of a random string, verified against for unknown user names. */
    private static ?string $dummyHash = null;

    public function get(ResourceKind $kind, string $id): ?StoredResource
    {
        $stmt = $this->pdo->prepare(
            'SELECT id, version, created, last_modified, json FROM ' . $this->table($kind) . ' WHERE id = ?'
        );
        $stmt->execute([$id]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC);
        return $row === false ? null : self::stored($row);
    }

    public function create(ResourceKind $kind, string $json, ?CmsUser $cms): StoredResource
    {
        $value = self::parse($json);
        $passwordHash = self::takePassword($kind, $json, $value, $cms);
        return $this->transaction(function () use ($kind, $json, $value, $cms, $passwordHash): StoredResource {
            $key = self::uniqueKey($kind, $value);
            $this->conflictCheck($kind, $key, null);
            $id = self::newId();
            $now = gmdate('Y-m-d\TH:i:s\Z');
            $this->pdo->prepare('INSERT INTO ' . $this->table($kind)
                . ' (id, version, created, last_modified, unique_key, external_id, json) VALUES (?, 1, ?, ?, ?, ?, ?)')
                ->execute([$id, $now, $now, $key, self::externalId($value), $json]);
            if ($kind === ResourceKind::Group) {
                $this->indexMembers($id, $value);
            }
            $this->storePasswordHash($kind, $id, $passwordHash);
            $this->mirror($id, $value, $cms);
            return new StoredResource($id, 'W/"1"', $now, $now, $json);
        });
    }

    public function replace(
        ResourceKind $kind,
        string $id,
        string $json,
        ?CmsUser $cms,
        ?string $ifVersion,
    ): StoredResource {
        $value = self::parse($json);
        // Without a password the stored hash stays (a client cannot read it back, so leaving
        // it out does not mean "clear it").
        $passwordHash = self::takePassword($kind, $json, $value, $cms);
        return $this->transaction(function () use ($kind, $id, $json, $value, $cms, $ifVersion, $passwordHash) {
            $stored = $this->doReplace($kind, $id, $json, $value, $cms, $ifVersion);
            $this->storePasswordHash($kind, $id, $passwordHash);
            return $stored;
        });
    }

    /**
     * Whether $password is the password last set for the user named $userName (case-insensitive),
     * checked against its hash: how the CMS logs in a user an identity provider provisioned.
     */
    public function verifyPassword(string $userName, string $password): bool
    {
        $stmt = $this->pdo->prepare('SELECT password_hash FROM ' . $this->table(ResourceKind::User)
            . ' WHERE unique_key = ?');
        $stmt->execute([mb_strtolower($userName)]);
        $hash = $stmt->fetchColumn();
        // An unknown user costs a verify too, so timing does not tell names apart.
        $known = is_string($hash) && $hash !== '';
        self::$dummyHash ??= password_hash(random_bytes(16), PASSWORD_DEFAULT);
        return password_verify($password, $known ? $hash : self::$dummyHash) && $known;
    }

    /**
     * Takes a User's `password` (any case) out of $json and $value, and out of the CMS fields
     * the reverse mapping made of it; returns its hash, or null when there was none.
     *
     * @param array<string, mixed> $value
     */
    private static function takePassword(ResourceKind $kind, string &$json, array &$value, ?CmsUser &$cms): ?string
    {
        if ($kind !== ResourceKind::User) {
            return null;
        }
        $password = null;
        foreach (array_keys($value) as $key) {
            if (strcasecmp((string) $key, 'password') === 0) {
                $password = is_string($value[$key]) ? $value[$key] : null;
                unset($value[$key]);
            }
        }
        if ($password === null) {
            return null;
        }
        $json = json_encode((object) $value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
        if ($cms !== null && in_array($password, $cms->fields, true)) {
            $fields = array_filter($cms->fields, static fn ($v): bool => $v !== $password);
            $cms = new CmsUser($cms->id, $fields, $cms->active);
        }
        return password_hash($password, PASSWORD_DEFAULT);
    }

    private function storePasswordHash(ResourceKind $kind, string $id, ?string $hash): void
    {
        if ($kind === ResourceKind::User && $hash !== null) {
            $this->pdo->prepare('UPDATE ' . $this->table(ResourceKind::User) . ' SET password_hash = ? WHERE id = ?')
                ->execute([$hash, $id]);
        }
    }

    /**
     * A group's JSON without the member $id, as an array; null when it is not a group or
     * has no such member (then it is left as it is).
     *
     * @return array<string, mixed>|null
     */
    private static function withoutMember(mixed $group, string $id): ?array
    {
        if (!is_array($group) || !isset($group['members']) || !is_array($group['members'])) {
            return null;
        }
        $members = array_values(array_filter(
            $group['members'],
            static fn ($m): bool => !is_array($m) || ($m['value'] ?? null) !== $id,
        ));
        if (count($members) === count($group['members'])) {
            return null;
        }
        $group['members'] = $members;
        return $group;
    }

    /**
     * The CMS user's login name, mail and other fields (as JSON) for `mirror()`; null when it
     * has no name (without a name rule in the mapping, the SCIM userName is the login name).
     *
     * @param array<string, mixed> $scim
     * @return array{0: string, 1: string, 2: string}|null
     */
    private static function cmsRecord(CmsUser $cms, array $scim): ?array
    {
        $name = null;
        $mail = '';
        $fields = [];
        foreach ($cms->fields as $k => $v) {
            if ($k === 'name' && is_string($v)) {
                $name = $v;
            } elseif ($k === 'mail' && is_string($v)) {
                $mail = $v;
            } elseif ($v !== null) {
                $fields[$k] = $v;
            }
        }
        $name ??= is_string($scim['userName'] ?? null) ? $scim['userName'] : null;
        if ($name === null) {
            return null;
        }
        $fieldsJson = json_encode(
            (object) $fields,
            JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR,
        );
        return [$name, $mail, $fieldsJson];
    }

    private function conflictCheck(ResourceKind $kind, ?string $key, ?string $exceptId): void
    {
        if ($key === null) {
            return;
        }
        $stmt = $this->pdo->prepare('SELECT id FROM ' . $this->table($kind) . ' WHERE unique_key = ?');
        $stmt->execute([$key]);
        $other = $stmt->fetchColumn();
        if ($other !== false && $other !== $exceptId) {
            $attr = $kind === ResourceKind::User ? 'userName' : 'displayName';
            throw DirectoryException::conflict("{$attr} \"{$key}\" is already taken");
        }
    }

    /**
     * A SQL condition for an equality on an indexed attribute, or [null, null].
     *
     * @return array{0: string|null, 1: string|null}
     */
    private function indexedEquality(ResourceKind $kind, ?string $filter): array
    {
        if (($member = self::memberLookup($kind, $filter)) !== null) {
            return [
                'id IN (SELECT group_id FROM ' . $this->membersTable() . ' WHERE member_key = ?)',
                mb_strtolower($member),
            ];
        }
        if ($filter === null || !preg_match('/^\s*([A-Za-z]+)\s+eq\s+("(?:[^"\\\\]|\\\\.)*")\s*$/', $filter, $m)) {
            return [null, null];
        }
        $value = json_decode($m[2]);
        if (!is_string($value)) {
            return [null, null];
        }
        $unique = $kind === ResourceKind::User ? 'username' : 'displayname';
        return match (strtolower($m[1])) {
            $unique => ['unique_key = ?', mb_strtolower($value)],
            'id' => ['id = ?', $value],
            'externalid' => ['external_id = ?', $value],
            default => [null, null],
        };
    }

    /**
     * The member value of a group filter that asks for one member: `members[value eq "x"]`
     * (how the component asks for a user's groups) or `members.value eq "x"`, at most
     * `MEMBER_KEY_MAX` characters long; else null. Nothing may stand between `members` and
     * `[` or `.`: the component's filter parser refuses a space there, and the index may
     * answer a lookup alone (as the Python host).
     */
    private static function memberLookup(ResourceKind $kind, ?string $filter): ?string
    {
        if (
            $kind === ResourceKind::Group && $filter !== null
            && preg_match(
                '/^\s*members(?:\[\s*value|\.value)\s+eq\s+("(?:[^"\\\\]|\\\\.)*")\s*(\]?)\s*$/i',
                $filter,
                $m,
            )
            && ($m[2] === ']') === (bool) preg_match('/^\s*members\[/i', $filter)
            && is_string($member = json_decode($m[1]))
            && mb_strlen($member) <= self::MEMBER_KEY_MAX
        ) {
            return $member;
        }
        return null;
    }

    /** @return array<string, mixed> */
    private static function parse(string $json): array
    {
        $value = json_decode($json, true);
        if (!is_array($value)) {
            throw new DirectoryException('other', 'the resource is not a JSON object');
        }
        return $value;
    }

    /** @param array<string, mixed> $row */
    private static function stored(array $row): StoredResource
    {
        return new StoredResource(
            (string) $row['id'],
            'W/"' . $row['version'] . '"',
            (string) $row['created'],
            (string) $row['last_modified'],
            (string) $row['json'],
        );
    }

    private static function newId(): string
    {
        $b = random_bytes(16);
        $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
        $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    }
}
