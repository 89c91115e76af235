<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\Link;

/**
 * What the client role remembers about a provisioned user, in user meta: the remote id,
 * its version (ETag), the snapshot the component diffs against, the fingerprint of what
 * was last sent (a sync skips unchanged users without asking the server), and the last
 * result for the Users list.
 */
final class Links
{
    public const META_PREFIX = '_scim_provisioner_';
    public const REMOTE_ID = self::META_PREFIX . 'remote_id';
    public const VERSION = self::META_PREFIX . 'version';
    public const SNAPSHOT = self::META_PREFIX . 'snapshot';
    public const FINGERPRINT = self::META_PREFIX . 'fingerprint';
    public const LAST_RESULT = self::META_PREFIX . 'last_result';
    public const LAST_AT = self::META_PREFIX . 'last_at';

    /** @return array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}|null */
    public static function get(int $userId): ?array
    {
        $remote = get_user_meta($userId, self::REMOTE_ID, true);
        if (!is_string($remote) || $remote === '') {
            return null;
        }
        $version = get_user_meta($userId, self::VERSION, true);
        $snapshot = get_user_meta($userId, self::SNAPSHOT, true);
        $fingerprint = get_user_meta($userId, self::FINGERPRINT, true);
        return [
            'remote_id' => $remote,
            'version' => is_string($version) && $version !== '' ? $version : null,
            'snapshot' => is_string($snapshot) && $snapshot !== '' ? $snapshot : null,
            'fingerprint' => is_string($fingerprint) && $fingerprint !== '' ? $fingerprint : null,
        ];
    }

    /** @param array{remote_id: string, version?: ?string, snapshot?: ?string}|null $row */
    public static function toLink(?array $row): ?Link
    {
        return $row === null
            ? null
            : new Link((string) $row['remote_id'], $row['version'] ?? null, $row['snapshot'] ?? null);
    }

    /**
     * Stores the outcome's link (or removes it when null) and the fingerprint. Meta values
     * are slashed by update_user_meta, so JSON goes through wp_slash.
     */
    public static function save(int $userId, ?Link $link, ?string $fingerprint): void
    {
        if ($link === null) {
            foreach ([self::REMOTE_ID, self::VERSION, self::SNAPSHOT, self::FINGERPRINT] as $key) {
                delete_user_meta($userId, $key);
            }
            return;
        }
        self::put($userId, self::REMOTE_ID, $link->remoteId);
        self::put($userId, self::VERSION, $link->version ?? '');
        self::put($userId, self::SNAPSHOT, $link->snapshot ?? '');
        self::put($userId, self::FINGERPRINT, $fingerprint ?? '');
    }

    public static function recordResult(int $userId, string $result): void
    {
        self::put($userId, self::LAST_RESULT, mb_substr($result, 0, 500));
        self::put($userId, self::LAST_AT, (string) time());
    }

    /**
     * Every linked user: user id => link row, in one query.
     *
     * @return array<int, array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}>
     */
    public static function all(): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT user_id, meta_key, meta_value FROM {$wpdb->usermeta} WHERE meta_key IN (%s, %s, %s, %s)",
            self::REMOTE_ID,
            self::VERSION,
            self::SNAPSHOT,
            self::FINGERPRINT,
        ), ARRAY_A);
        if (!is_array($rows)) {
            throw new \RuntimeException('the links could not be read: ' . $wpdb->last_error);
        }
        $by = [];
        foreach ($rows as $r) {
            $by[(int) $r['user_id']][(string) $r['meta_key']] = (string) $r['meta_value'];
        }
        $out = [];
        foreach ($by as $userId => $m) {
            if (($m[self::REMOTE_ID] ?? '') === '') {
                continue;
            }
            $out[$userId] = [
                'remote_id' => $m[self::REMOTE_ID],
                'version' => ($m[self::VERSION] ?? '') !== '' ? $m[self::VERSION] : null,
                'snapshot' => ($m[self::SNAPSHOT] ?? '') !== '' ? $m[self::SNAPSHOT] : null,
                'fingerprint' => ($m[self::FINGERPRINT] ?? '') !== '' ? $m[self::FINGERPRINT] : null,
            ];
        }
        return $out;
    }

    private static function put(int $userId, string $key, string $value): void
    {
        $saved = update_user_meta($userId, $key, wp_slash($value)) !== false
            || get_user_meta($userId, $key, true) === $value;
        if (!$saved) {
            global $wpdb;
            throw new \RuntimeException("user {$userId}: {$key} could not be saved: " . $wpdb->last_error);
        }
    }
}
