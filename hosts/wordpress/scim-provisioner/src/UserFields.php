<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\CmsUser;

/**
 * A WordPress user as the component's CmsUser: the fields the mapping reads.
 *
 * Fields: user_login, user_email, first_name, last_name, display_name, nickname, user_url,
 * user_registered, roles (the user's roles on this site), has_role (bool), and any user-meta
 * key the mapping names as a source or template placeholder (read with get_user_meta, only
 * scalar values; a few keys that hold secrets are never read). Active = has at least one
 * role: WordPress has no "blocked" flag.
 */
final class UserFields
{
    public const HAS_ROLE = 'has_role';
    /** Fields read from WP_User itself, not from user meta. */
    public const CORE = [
        'user_login', 'user_email', 'first_name', 'last_name', 'display_name', 'nickname', 'user_url',
        'user_registered', 'roles', self::HAS_ROLE,
    ];
    /** User-meta keys that are never sent: WordPress keeps secrets in them. */
    private const NEVER = ['session_tokens', 'user_pass', 'user_activation_key'];

    /** @param list<string> $metaKeys the extra user-meta keys the mapping reads */
    public function __construct(private readonly array $metaKeys = [])
    {
    }

    /**
     * The meta keys a list of mapping rules reads: sources and template placeholders that are
     * not core fields (nor `@id` / `@active`).
     *
     * @param list<array<string, mixed>> $rules
     * @return list<string>
     */
    public static function metaKeysOf(array $rules): array
    {
        $names = [];
        foreach ($rules as $rule) {
            if (!is_array($rule)) {
                continue;
            }
            if (isset($rule['source']) && is_string($rule['source'])) {
                $names[] = $rule['source'];
            }
            if (
                isset($rule['template']) && is_string($rule['template'])
                && preg_match_all('/(?<!\{)\{([^{}]+)\}/', $rule['template'], $m)
            ) {
                array_push($names, ...$m[1]);
            }
        }
        $meta = [];
        foreach (array_unique($names) as $name) {
            if (
                $name !== '' && $name[0] !== '@'
                && !in_array($name, self::CORE, true) && !in_array($name, self::NEVER, true)
                && !str_starts_with($name, Links::META_PREFIX)
            ) {
                $meta[] = $name;
            }
        }
        return $meta;
    }

    /**
     * The fields of a user as plain data (what an outbox row keeps).
     *
     * @return array{id: string, fields: array<string, string|int|float|bool|list<string>|null>, active: bool}
     */
    public function snapshot(\WP_User $user): array
    {
        $roles = array_values(array_map('strval', (array) $user->roles));
        $fields = [
            'user_login' => (string) $user->user_login,
            'user_email' => (string) $user->user_email,
            'first_name' => (string) $user->first_name,
            'last_name' => (string) $user->last_name,
            'display_name' => (string) $user->display_name,
            'nickname' => (string) $user->nickname,
            'user_url' => (string) $user->user_url,
            'user_registered' => (string) $user->user_registered,
            'roles' => $roles,
            self::HAS_ROLE => $roles !== [],
        ];
        foreach ($this->metaKeys as $key) {
            $value = get_user_meta($user->ID, $key, true);
            $fields[$key] = match (true) {
                is_string($value) && $value === '' => null,
                is_string($value), is_int($value), is_bool($value) => $value,
                is_float($value) && is_finite($value) => $value,
                is_array($value) && array_is_list($value) && array_filter($value, 'is_scalar') === $value
                    => array_map('strval', $value),
                default => null,
            };
        }
        return ['id' => (string) $user->ID, 'fields' => $fields, 'active' => $roles !== []];
    }

    /** @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot */
    public static function toCmsUser(array $snapshot): CmsUser
    {
        return new CmsUser((string) $snapshot['id'], $snapshot['fields'], (bool) $snapshot['active']);
    }

    /** @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot */
    public static function fingerprint(array $snapshot, string $policyJson): string
    {
        $what = [$snapshot['id'], $snapshot['fields'], (bool) $snapshot['active'], $policyJson];
        return sha1((string) wp_json_encode($what));
    }
}
