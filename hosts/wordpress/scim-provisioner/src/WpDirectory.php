<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\CmsUser;
use ScimProvisioner\PasswordHashingDirectory;
use ScimProvisioner\DirectoryException;
use ScimProvisioner\QueryPage;
use ScimProvisioner\ResourceKind;
use ScimProvisioner\Runtime;
use ScimProvisioner\Search;
use ScimProvisioner\StoredResource;

/**
 * The server role's directory on WordPress's own tables.
 *
 * **Users are real WordPress users** (wp_insert_user, wp_update_user, wp_delete_user). The
 * SCIM id, version, timestamps, externalId, the lower-cased userName (the uniqueness key)
 * and the SCIM resource as JSON are kept in user meta (`_scim_server_*`). Only users created
 * over SCIM are SCIM resources: the identity provider sees and changes what it provisioned,
 * never the site's other accounts (its administrators). A userName that is already a
 * WordPress login, or an email another WordPress user has, is a 409 uniqueness conflict.
 *
 * Fields come from the component's reverse mapping: user_login (userName, through
 * sanitize_user), user_email, first_name, last_name, display_name, nickname, user_url,
 * roles. Roles are assigned only when the resource names them, only when they exist, and
 * never when they carry an administrative capability (a SCIM token cannot make an admin).
 * `active=false` leaves the user with no role on the site, which is what "inactive" means
 * in this plugin; `active=true` gives back the roles the user had, or the site's default
 * role.
 *
 * **Passwords**: a `password` in the resource is set with WordPress's own hashing
 * (wp_insert_user / wp_set_password: wp_hash_password), then removed from the stored JSON.
 * It is never stored as sent and never returned. Being a {@see PasswordHashingDirectory} is
 * what makes the library declare `directory.hashes_passwords` to the component, which hands
 * a password to no other kind of directory.
 *
 * **Groups are the plugin's own table** (`{prefix}scim_groups` with a membership index),
 * not WordPress roles: a role is a set of capabilities, so turning an identity provider's
 * groups (arbitrary names, created and renamed at will) into roles would let the provider
 * mint capability sets and grant them by membership; nor can a role hold a group's id,
 * externalId or member list. Roles reach users through the user's `roles` attribute, under
 * the rules above.
 *
 * Searches: equality on userName/displayName, id or externalId is SQL; everything else is
 * decided by the component's own filter engine over the candidates ({@see Runtime::select()}).
 * Writes run in a transaction with the resource's row locked, so If-Match versions hold
 * under concurrent requests.
 */
final class WpDirectory implements PasswordHashingDirectory
{
    public const META_ID = '_scim_server_id';
    public const META_VERSION = '_scim_server_version';
    public const META_CREATED = '_scim_server_created';
    public const META_MODIFIED = '_scim_server_modified';
    public const META_EXTERNAL_ID = '_scim_server_external_id';
    public const META_KEY = '_scim_server_username_key';
    public const META_JSON = '_scim_server_json';
    public const META_ROLES_BEFORE = '_scim_server_roles_before_inactive';
    /** Capabilities a role must not have to be assignable over SCIM. */
    public const ADMIN_CAPABILITIES = [
        'manage_options', 'promote_users', 'edit_users', 'create_users', 'delete_users', 'activate_plugins',
        'install_plugins', 'edit_plugins', 'update_core', 'manage_network',
    ];

    private readonly string $groups;
    private readonly string $members;

    public function __construct(private readonly Runtime $runtime)
    {
        $tables = Schema::tables();
        $this->groups = $tables['groups'];
        $this->members = $tables['group_members'];
    }

    public function get(ResourceKind $kind, string $id): ?StoredResource
    {
        if ($kind === ResourceKind::Group) {
            return $this->getGroup($id);
        }
        $userId = $this->userIdFor($id);
        return $userId === null ? null : $this->storedUser($userId);
    }

    public function query(ResourceKind $kind, Search $search): QueryPage
    {
        return $kind === ResourceKind::User ? $this->queryUsers($search) : $this->queryGroups($search);
    }

    public function create(ResourceKind $kind, string $json, ?CmsUser $cms): StoredResource
    {
        [$value, $password] = self::parse($json);
        if ($kind === ResourceKind::Group) {
            return $this->transaction(fn (): StoredResource => $this->createGroup($value));
        }
        return $this->transaction(fn (): StoredResource => $this->createUser($value, $password, $cms));
    }

    public function replace(
        ResourceKind $kind,
        string $id,
        string $json,
        ?CmsUser $cms,
        ?string $ifVersion,
    ): StoredResource {
        [$value, $password] = self::parse($json);
        if ($kind === ResourceKind::Group) {
            return $this->transaction(fn (): StoredResource => $this->replaceGroup($id, $value, $ifVersion));
        }
        return $this->transaction(
            fn (): StoredResource => $this->replaceUser($id, $value, $password, $cms, $ifVersion)
        );
    }

    /** Whether $password is the one WordPress holds (hashed) for the login $userName. */
    public function verifyPassword(string $userName, string $password): bool
    {
        $user = get_user_by('login', $userName);
        return $user instanceof \WP_User && wp_check_password($password, $user->user_pass, $user->ID);
    }

    public function delete(ResourceKind $kind, string $id): bool
    {
        if ($kind === ResourceKind::Group) {
            return $this->transaction(fn (): bool => $this->deleteGroup($id));
        }
        return $this->transaction(function () use ($id): bool {
            $userId = $this->userIdFor($id);
            if ($userId === null) {
                return false;
            }
            require_once ABSPATH . 'wp-admin/includes/user.php';
            // The user's posts go to the oldest administrator instead of being deleted with them.
            $reassign = $this->oldestAdministrator($userId);
            if (!wp_delete_user($userId, $reassign)) {
                throw new DirectoryException('other', 'WordPress could not delete the user');
            }
            $this->dropMember($id);
            return true;
        });
    }

    // ---------------------------------------------------------------- users

    /**
     * @param array<string, mixed> $value
     */
    private function createUser(array $value, ?string $password, ?CmsUser $cms): StoredResource
    {
        $userName = self::userName($value);
        $key = mb_strtolower($userName);
        if ($this->userIdByKey($key) !== null) {
            throw DirectoryException::conflict("userName \"{$userName}\" is already taken");
        }
        $login = self::login($userName);
        if (username_exists($login)) {
            throw DirectoryException::conflict("a WordPress user with the login \"{$login}\" already exists");
        }
        $fields = self::fields($cms);
        if ($fields['user_email'] !== '' && email_exists($fields['user_email'])) {
            throw DirectoryException::conflict('another WordPress user has this email address');
        }
        $userId = wp_insert_user(wp_slash([
            'user_login' => $login,
            'user_email' => $fields['user_email'],
            // Hashed by WordPress (wp_hash_password); a user without one gets a random one
            // and uses "Lost your password?".
            'user_pass' => $password ?? wp_generate_password(32, true, true),
            'first_name' => $fields['first_name'],
            'last_name' => $fields['last_name'],
            'display_name' => $fields['display_name'] !== '' ? $fields['display_name'] : $login,
            'nickname' => $fields['nickname'] !== '' ? $fields['nickname'] : $login,
            'user_url' => $fields['user_url'],
            'role' => '',
        ]));
        if (is_wp_error($userId)) {
            throw self::wpError($userId);
        }
        $user = new \WP_User($userId);
        $this->applyRoles($user, $fields['roles'], $cms?->active ?? true, true);
        $id = wp_generate_uuid4();
        $now = gmdate('Y-m-d\TH:i:s\Z');
        $json = self::encode($value);
        $this->putMeta($userId, [
            self::META_ID => $id,
            self::META_VERSION => '1',
            self::META_CREATED => $now,
            self::META_MODIFIED => $now,
            self::META_EXTERNAL_ID => is_string($value['externalId'] ?? null) ? $value['externalId'] : '',
            self::META_KEY => $key,
            self::META_JSON => $json,
        ]);
        return new StoredResource($id, 'W/"1"', $now, $now, $json);
    }

    /**
     * @param array<string, mixed> $value
     */
    private function replaceUser(
        string $id,
        array $value,
        ?string $password,
        ?CmsUser $cms,
        ?string $ifVersion,
    ): StoredResource {
        global $wpdb;
        $userId = $this->userIdFor($id) ?? throw DirectoryException::notFound();
        // Lock the version row: two writers of one resource go one after the other.
        $version = (int) $wpdb->get_var($wpdb->prepare(
            "SELECT meta_value FROM {$wpdb->usermeta} WHERE user_id = %d AND meta_key = %s FOR UPDATE",
            $userId,
            self::META_VERSION,
        ));
        if ($ifVersion !== null && $ifVersion !== 'W/"' . $version . '"') {
            throw DirectoryException::versionMismatch();
        }
        $user = get_userdata($userId);
        if (!$user instanceof \WP_User) {
            throw DirectoryException::notFound();
        }
        $userName = self::userName($value);
        $key = mb_strtolower($userName);
        $other = $this->userIdByKey($key);
        if ($other !== null && $other !== $userId) {
            throw DirectoryException::conflict("userName \"{$userName}\" is already taken");
        }
        $login = self::login($userName);
        if ($login !== $user->user_login) {
            $holder = username_exists($login);
            if ($holder && (int) $holder !== $userId) {
                throw DirectoryException::conflict("a WordPress user with the login \"{$login}\" already exists");
            }
            // wp_update_user cannot rename a login; WordPress's own data is changed the way core does on insert.
            $wpdb->update($wpdb->users, ['user_login' => $login], ['ID' => $userId], ['%s'], ['%d']);
            clean_user_cache($user);
        }
        $fields = self::fields($cms);
        if ($fields['user_email'] !== '') {
            $holder = email_exists($fields['user_email']);
            if ($holder && (int) $holder !== $userId) {
                throw DirectoryException::conflict('another WordPress user has this email address');
            }
        }
        $update = [
            'ID' => $userId,
            'user_email' => $fields['user_email'],
            'first_name' => $fields['first_name'],
            'last_name' => $fields['last_name'],
            'display_name' => $fields['display_name'] !== '' ? $fields['display_name'] : $login,
            'nickname' => $fields['nickname'] !== '' ? $fields['nickname'] : $login,
            'user_url' => $fields['user_url'],
        ];
        if ($password !== null) {
            $update['user_pass'] = $password;
        }
        // The identity provider changed these; WordPress's notification mails are its business.
        add_filter('send_password_change_email', '__return_false');
        add_filter('send_email_change_email', '__return_false');
        try {
            $result = wp_update_user(wp_slash($update));
        } finally {
            remove_filter('send_password_change_email', '__return_false');
            remove_filter('send_email_change_email', '__return_false');
        }
        if (is_wp_error($result)) {
            throw self::wpError($result);
        }
        $this->applyRoles(new \WP_User($userId), $fields['roles'], $cms?->active ?? true, false);
        $now = gmdate('Y-m-d\TH:i:s\Z');
        $json = self::encode($value);
        $this->putMeta($userId, [
            self::META_VERSION => (string) ($version + 1),
            self::META_MODIFIED => $now,
            self::META_EXTERNAL_ID => is_string($value['externalId'] ?? null) ? $value['externalId'] : '',
            self::META_KEY => $key,
            self::META_JSON => $json,
        ]);
        return $this->storedUser($userId) ?? throw DirectoryException::notFound();
    }

    /**
     * @param list<string>|null $roles the roles the resource names; null when it names none
     */
    private function applyRoles(\WP_User $user, ?array $roles, bool $active, bool $creating): void
    {
        if (!$active) {
            if ($user->roles !== []) {
                update_user_meta($user->ID, self::META_ROLES_BEFORE, array_values($user->roles));
                $user->set_role('');
            }
            return;
        }
        $wanted = $roles === null ? null : $this->assignable($roles);
        if ($wanted === null || $wanted === []) {
            if ($user->roles !== [] && !$creating) {
                return; // active, and the resource says nothing about roles: leave WordPress's as they are
            }
            $before = get_user_meta($user->ID, self::META_ROLES_BEFORE, true);
            $wanted = is_array($before) && $before !== [] ? $this->assignable(array_map('strval', $before)) : [];
            if ($wanted === []) {
                $wanted = [(string) get_option('default_role', 'subscriber')];
            }
        }
        delete_user_meta($user->ID, self::META_ROLES_BEFORE);
        if (array_values($user->roles) === $wanted) {
            return;
        }
        $user->set_role(array_shift($wanted));
        foreach ($wanted as $role) {
            $user->add_role($role);
        }
    }

    /**
     * The roles of the list that exist and carry no administrative capability.
     *
     * @param list<string> $roles
     * @return list<string>
     */
    private function assignable(array $roles): array
    {
        $out = [];
        foreach ($roles as $name) {
            $role = get_role($name);
            if ($role === null) {
                continue;
            }
            $caps = array_keys(array_filter($role->capabilities));
            if (array_intersect($caps, self::ADMIN_CAPABILITIES) === []) {
                $out[] = $name;
            }
        }
        /** Filters the roles a SCIM request may give a user. */
        $out = apply_filters('scim_provisioner_assignable_roles', array_values(array_unique($out)), $roles);
        return array_values(array_map('strval', (array) $out));
    }

    private function queryUsers(Search $search): QueryPage
    {
        global $wpdb;
        if ($search->filter === null && $search->sortBy === null) {
            $total = (int) $wpdb->get_var(
                $wpdb->prepare("SELECT COUNT(*) FROM {$wpdb->usermeta} WHERE meta_key = %s", self::META_ID)
            );
            if ($search->count === 0) {
                return new QueryPage($total, []);
            }
            $ids = $wpdb->get_col($wpdb->prepare(
                "SELECT user_id FROM {$wpdb->usermeta} WHERE meta_key = %s ORDER BY user_id LIMIT %d OFFSET %d",
                self::META_ID,
                $search->count,
                max(1, $search->startIndex) - 1,
            ));
            return new QueryPage($total, $this->storedUsers(array_map('intval', $ids)));
        }
        [$metaKey, $metaValue] = self::userEquality($search->filter);
        if ($metaKey !== null) {
            $ids = $wpdb->get_col($wpdb->prepare(
                "SELECT user_id FROM {$wpdb->usermeta} WHERE meta_key = %s AND meta_value = %s ORDER BY user_id",
                $metaKey,
                $metaValue,
            ));
        } else {
            $ids = $wpdb->get_col($wpdb->prepare(
                "SELECT user_id FROM {$wpdb->usermeta} WHERE meta_key = %s ORDER BY user_id",
                self::META_ID,
            ));
        }
        return $this->select(ResourceKind::User, $search, $this->storedUsers(array_map('intval', $ids)));
    }

    /**
     * @param list<int> $userIds
     * @return list<StoredResource>
     */
    private function storedUsers(array $userIds): array
    {
        if ($userIds === []) {
            return [];
        }
        update_meta_cache('user', $userIds);
        $out = [];
        foreach ($userIds as $userId) {
            if (($stored = $this->storedUser($userId)) !== null) {
                $out[] = $stored;
            }
        }
        return $out;
    }

    private function storedUser(int $userId): ?StoredResource
    {
        $meta = static fn (string $key): string => (string) get_user_meta($userId, $key, true);
        $id = $meta(self::META_ID);
        if ($id === '') {
            return null;
        }
        return new StoredResource(
            $id,
            'W/"' . (int) $meta(self::META_VERSION) . '"',
            $meta(self::META_CREATED),
            $meta(self::META_MODIFIED),
            $meta(self::META_JSON),
        );
    }

    private function userIdFor(string $scimId): ?int
    {
        return $this->userIdByMeta(self::META_ID, $scimId);
    }

    private function userIdByKey(string $key): ?int
    {
        return $this->userIdByMeta(self::META_KEY, $key);
    }

    private function userIdByMeta(string $metaKey, string $value): ?int
    {
        global $wpdb;
        $id = $wpdb->get_var($wpdb->prepare(
            "SELECT user_id FROM {$wpdb->usermeta} WHERE meta_key = %s AND meta_value = %s LIMIT 1",
            $metaKey,
            $value,
        ));
        return $id === null ? null : (int) $id;
    }

    /**
     * A meta lookup for an equality on userName, id or externalId; [null, null] otherwise.
     *
     * @return array{0: ?string, 1: ?string}
     */
    private static function userEquality(?string $filter): array
    {
        [$attr, $value] = self::equality($filter);
        return match ($attr) {
            'username' => [self::META_KEY, mb_strtolower((string) $value)],
            'id' => [self::META_ID, $value],
            'externalid' => [self::META_EXTERNAL_ID, $value],
            default => [null, null],
        };
    }

    /** @param array<string, string> $values */
    private function putMeta(int $userId, array $values): void
    {
        foreach ($values as $key => $value) {
            $saved = update_user_meta($userId, $key, wp_slash($value)) !== false
                || (string) get_user_meta($userId, $key, true) === $value;
            if (!$saved) {
                global $wpdb;
                $why = "the user's SCIM data could not be saved: {$wpdb->last_error}";
                throw new DirectoryException('unavailable', $why);
            }
        }
    }

    private function oldestAdministrator(int $except): ?int
    {
        $ids = get_users([
            'role' => 'administrator',
            'orderby' => 'ID',
            'order' => 'ASC',
            'number' => 2,
            'fields' => 'ID',
        ]);
        foreach ($ids as $id) {
            if ((int) $id !== $except) {
                return (int) $id;
            }
        }
        return null;
    }

    /**
     * The WordPress fields of the reverse mapping, as strings (roles as a list or null).
     *
     * @return array{user_email: string, first_name: string, last_name: string, display_name: string, nickname: string,
     *     user_url: string, roles: ?list<string>}
     */
    private static function fields(?CmsUser $cms): array
    {
        $text = static function (string $name) use ($cms): string {
            $v = $cms?->field($name);
            if (is_array($v)) {
                $v = $v[0] ?? '';
            }
            return is_scalar($v) ? trim((string) $v) : '';
        };
        $roles = $cms?->field('roles');
        if (is_string($roles)) {
            $roles = array_values(array_filter(array_map('trim', explode(',', $roles))));
        }
        $email = $text('user_email');
        if ($email !== '' && !is_email($email)) {
            throw new DirectoryException('other', 'the email address is not valid for WordPress');
        }
        return [
            'user_email' => $email,
            'first_name' => $text('first_name'),
            'last_name' => $text('last_name'),
            'display_name' => $text('display_name'),
            'nickname' => $text('nickname'),
            'user_url' => $text('user_url'),
            'roles' => is_array($roles) ? array_values(array_map('strval', $roles)) : null,
        ];
    }

    /** userName as a WordPress login: sanitize_user, at most 60 characters. */
    private static function login(string $userName): string
    {
        $login = sanitize_user($userName, true);
        if ($login === '' || mb_strlen($login) > 60) {
            throw new DirectoryException('other', 'this userName cannot be a WordPress login '
                . '(letters, digits, spaces and _ . - @, at most 60 characters)');
        }
        return $login;
    }

    /** @param array<string, mixed> $value */
    private static function userName(array $value): string
    {
        $userName = $value['userName'] ?? null;
        return is_string($userName) ? $userName : throw new DirectoryException('other', 'userName is required');
    }

    private static function wpError(\WP_Error $e): DirectoryException
    {
        $code = (string) $e->get_error_code();
        return in_array($code, ['existing_user_login', 'existing_user_email', 'existing_user_nicename'], true)
            ? DirectoryException::conflict($e->get_error_message())
            : new DirectoryException('other', wp_strip_all_tags($e->get_error_message()));
    }

    // ---------------------------------------------------------------- groups

    private function getGroup(string $id): ?StoredResource
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare(
            "SELECT id, version, created, last_modified, json FROM {$this->groups} WHERE id = %s",
            $id,
        ), ARRAY_A);
        return is_array($row) ? self::storedGroup($row) : null;
    }

    /** @param array<string, mixed> $value */
    private function createGroup(array $value): StoredResource
    {
        global $wpdb;
        $key = self::groupKey($value);
        $this->groupConflict($key, null);
        $id = wp_generate_uuid4();
        $now = gmdate('Y-m-d\TH:i:s\Z');
        $json = self::encode($value);
        $row = ['id' => $id, 'version' => 1, 'created' => $now, 'last_modified' => $now, 'json' => $json];
        $formats = ['%s', '%d', '%s', '%s', '%s'];
        if ($key !== null) {
            $row['unique_key'] = $key;
            $formats[] = '%s';
        }
        if (is_string($value['externalId'] ?? null)) {
            $row['external_id'] = mb_substr($value['externalId'], 0, 191);
            $formats[] = '%s';
        }
        if ($wpdb->insert($this->groups, $row, $formats) === false) {
            throw self::dbError('the group could not be stored');
        }
        $this->indexMembers($id, $value);
        return new StoredResource($id, 'W/"1"', $now, $now, $json);
    }

    /** @param array<string, mixed> $value */
    private function replaceGroup(string $id, array $value, ?string $ifVersion): StoredResource
    {
        global $wpdb;
        $version = $wpdb->get_var($wpdb->prepare("SELECT version FROM {$this->groups} WHERE id = %s FOR UPDATE", $id));
        if ($version === null) {
            throw DirectoryException::notFound();
        }
        if ($ifVersion !== null && $ifVersion !== 'W/"' . (int) $version . '"') {
            throw DirectoryException::versionMismatch();
        }
        $key = self::groupKey($value);
        $this->groupConflict($key, $id);
        $externalId = is_string($value['externalId'] ?? null) ? mb_substr($value['externalId'], 0, 191) : null;
        // prepare() turns null into '', so NULL is written into the statement itself.
        $sql = "UPDATE {$this->groups} SET version = version + 1, last_modified = %s, json = %s"
            . ', unique_key = ' . ($key === null ? 'NULL' : '%s')
            . ', external_id = ' . ($externalId === null ? 'NULL' : '%s')
            . ' WHERE id = %s';
        $args = array_values(array_filter(
            [gmdate('Y-m-d\TH:i:s\Z'), self::encode($value), $key, $externalId, $id],
            static fn ($v): bool => $v !== null,
        ));
        if ($wpdb->query($wpdb->prepare($sql, ...$args)) === false) {
            throw self::dbError('the group could not be stored');
        }
        $this->indexMembers($id, $value);
        return $this->getGroup($id) ?? throw DirectoryException::notFound();
    }

    private function deleteGroup(string $id): bool
    {
        global $wpdb;
        $deleted = $wpdb->query($wpdb->prepare("DELETE FROM {$this->groups} WHERE id = %s", $id));
        if ($deleted === false) {
            throw self::dbError('the group could not be deleted');
        }
        $wpdb->query($wpdb->prepare("DELETE FROM {$this->members} WHERE group_id = %s", $id));
        return $deleted > 0;
    }

    /** Removes a deleted user from the groups that named them. */
    private function dropMember(string $userScimId): void
    {
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT id, json FROM {$this->groups}
             WHERE id IN (SELECT group_id FROM {$this->members} WHERE member_key = %s)",
            mb_strtolower($userScimId),
        ), ARRAY_A);
        foreach (is_array($rows) ? $rows : [] as $g) {
            $group = json_decode((string) $g['json'], true);
            if (!is_array($group) || !is_array($group['members'] ?? null)) {
                continue;
            }
            $members = array_values(array_filter(
                $group['members'],
                static fn ($m): bool => !is_array($m) || ($m['value'] ?? null) !== $userScimId,
            ));
            if (count($members) !== count($group['members'])) {
                $group['members'] = $members;
                $this->replaceGroup((string) $g['id'], $group, null);
            }
        }
    }

    private function queryGroups(Search $search): QueryPage
    {
        global $wpdb;
        $cols = "SELECT id, version, created, last_modified, json FROM {$this->groups}";
        if ($search->filter === null && $search->sortBy === null) {
            $total = (int) $wpdb->get_var("SELECT COUNT(*) FROM {$this->groups}");
            if ($search->count === 0) {
                return new QueryPage($total, []);
            }
            $offset = max(1, $search->startIndex) - 1;
            $rows = $wpdb->get_results(
                $wpdb->prepare("{$cols} ORDER BY seq LIMIT %d OFFSET %d", $search->count, $offset),
                ARRAY_A,
            );
            return new QueryPage($total, array_map(self::storedGroup(...), is_array($rows) ? $rows : []));
        }
        $member = self::memberLookup($search->filter);
        if ($member !== null) {
            $rows = $wpdb->get_results($wpdb->prepare(
                "{$cols} WHERE id IN (SELECT group_id FROM {$this->members} WHERE member_key = %s) ORDER BY seq",
                mb_strtolower($member),
            ), ARRAY_A);
        } else {
            [$attr, $value] = self::equality($search->filter);
            $column = match ($attr) {
                'displayname' => 'unique_key',
                'id' => 'id',
                'externalid' => 'external_id',
                default => null,
            };
            $rows = $column === null
                ? $wpdb->get_results("{$cols} ORDER BY seq", ARRAY_A)
                : $wpdb->get_results($wpdb->prepare(
                    "{$cols} WHERE {$column} = %s ORDER BY seq",
                    $column === 'unique_key' ? mb_strtolower((string) $value) : $value,
                ), ARRAY_A);
        }
        if (!is_array($rows)) {
            throw self::dbError('the groups could not be read');
        }
        return $this->select(ResourceKind::Group, $search, array_map(self::storedGroup(...), $rows));
    }

    /** @param array<string, mixed> $group */
    private function indexMembers(string $groupId, array $group): void
    {
        global $wpdb;
        $wpdb->query($wpdb->prepare("DELETE FROM {$this->members} WHERE group_id = %s", $groupId));
        foreach (is_array($group['members'] ?? null) ? $group['members'] : [] as $member) {
            if (is_array($member) && is_string($member['value'] ?? null)) {
                $wpdb->query($wpdb->prepare(
                    "INSERT IGNORE INTO {$this->members} (group_id, member_key, member_value) VALUES (%s, %s, %s)",
                    $groupId,
                    mb_substr(mb_strtolower($member['value']), 0, 191),
                    mb_substr($member['value'], 0, 191),
                ));
            }
        }
    }

    private function groupConflict(?string $key, ?string $exceptId): void
    {
        global $wpdb;
        if ($key === null) {
            return;
        }
        $other = $wpdb->get_var($wpdb->prepare("SELECT id FROM {$this->groups} WHERE unique_key = %s", $key));
        if ($other !== null && $other !== $exceptId) {
            throw DirectoryException::conflict("displayName \"{$key}\" is already taken");
        }
    }

    /** @param array<string, mixed> $value */
    private static function groupKey(array $value): ?string
    {
        $name = $value['displayName'] ?? null;
        return is_string($name) ? mb_substr(mb_strtolower($name), 0, 191) : null;
    }

    /** @param array<string, mixed> $row */
    private static function storedGroup(array $row): StoredResource
    {
        return new StoredResource(
            (string) $row['id'],
            'W/"' . (int) $row['version'] . '"',
            (string) $row['created'],
            (string) $row['last_modified'],
            (string) $row['json'],
        );
    }

    /**
     * The member value of `members[value eq "x"]` or `members.value eq "x"`, else null.
     */
    private static function memberLookup(?string $filter): ?string
    {
        $pattern = '/^\s*members(?:\[\s*value|\.value)\s+eq\s+("(?:[^"\\\\]|\\\\.)*")\s*(\]?)\s*$/i';
        if (
            $filter !== null
            && preg_match($pattern, $filter, $m)
            && ($m[2] === ']') === (bool) preg_match('/^\s*members\[/i', $filter)
            && is_string($member = json_decode($m[1]))
        ) {
            return $member;
        }
        return null;
    }

    // ---------------------------------------------------------------- shared

    /**
     * `attr eq "value"` as [lower-cased attr, value]; [null, null] for anything else.
     *
     * @return array{0: ?string, 1: ?string}
     */
    private static function equality(?string $filter): array
    {
        if ($filter === null || !preg_match('/^\s*([A-Za-z]+)\s+eq\s+("(?:[^"\\\\]|\\\\.)*")\s*$/', $filter, $m)) {
            return [null, null];
        }
        $value = json_decode($m[2]);
        return is_string($value) ? [strtolower($m[1]), $value] : [null, null];
    }

    /**
     * Filters, sorts and pages candidates with the component's own filter engine.
     *
     * @param list<StoredResource> $candidates
     */
    private function select(ResourceKind $kind, Search $search, array $candidates): QueryPage
    {
        return $this->runtime->selectStored($kind, $search, $candidates);
    }

    /**
     * The resource without its password, and the password.
     *
     * @return array{0: array<string, mixed>, 1: ?string}
     */
    private static function parse(string $json): array
    {
        $value = json_decode($json, true);
        if (!is_array($value)) {
            throw new DirectoryException('other', 'the resource is not a JSON object');
        }
        $password = null;
        foreach (array_keys($value) as $key) {
            if (strcasecmp((string) $key, 'password') === 0) {
                $password = is_string($value[$key]) && $value[$key] !== '' ? $value[$key] : null;
                unset($value[$key]);
            }
        }
        return [$value, $password];
    }

    /** @param array<string, mixed> $value */
    private static function encode(array $value): string
    {
        return (string) json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
    }

    /**
     * @template T
     * @param callable(): T $work
     * @return T
     */
    private function transaction(callable $work): mixed
    {
        global $wpdb;
        if ($wpdb->query('START TRANSACTION') === false) {
            throw self::dbError('the database is unavailable');
        }
        try {
            $result = $work();
            if ($wpdb->query('COMMIT') === false) {
                throw self::dbError('the change could not be committed');
            }
            return $result;
        } catch (\Throwable $e) {
            $wpdb->query('ROLLBACK');
            // WordPress's object cache may hold what the rollback undid.
            wp_cache_flush();
            throw $e;
        }
    }

    private static function dbError(string $what): DirectoryException
    {
        global $wpdb;
        $detail = $wpdb->last_error !== '' ? ': ' . $wpdb->last_error : '';
        return new DirectoryException('unavailable', $what . $detail);
    }
}
