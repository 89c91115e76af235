<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\Link;

/**
 * What the client role remembers about a provisioned user, in user meta:
 * - `_scim_provisioner_link`: the remote id, its version (ETag), the snapshot the component
 *   diffs against, and the fingerprint of what was last sent (a sync skips unchanged users
 *   without asking the server), as one JSON value: one meta write per delivery;
 * - `_scim_provisioner_last`: the last result and when, for the Users list.
 */
final class Links
{
    public const META_PREFIX = '_scim_provisioner_';
    public const LINK = self::META_PREFIX . 'link';
    public const LAST = self::META_PREFIX . 'last';

    /** @return array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}|null */
    public static function get(int $userId): ?array
    {
        return self::decode(get_user_meta($userId, self::LINK, true));
    }

    /**
     * The links of these users (those that have one), by user id, in one query: a batch's,
     * read afresh (another deliverer may have saved one since this process cached the meta).
     *
     * @param list<int> $userIds
     * @return array<int, array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}>
     */
    public static function many(array $userIds): array
    {
        global $wpdb;
        if ($userIds === []) {
            return [];
        }
        $in = implode(', ', array_unique(array_map('intval', $userIds)));
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT user_id, meta_value FROM {$wpdb->usermeta} WHERE meta_key = %s AND user_id IN ({$in})",
            self::LINK,
        ), ARRAY_A);
        return self::byUser($rows);
    }

    /** @param array{remote_id: string, version?: ?string, snapshot?: ?string}|null $row */
    public static function toLink(?array $row): ?Link
    {
        return $row === null
            ? null
            : new Link((string) $row['remote_id'], $row['version'] ?? null, $row['snapshot'] ?? null);
    }

    /** Stores the outcome's link and the fingerprint, or removes the link when null. */
    public static function save(int $userId, ?Link $link, ?string $fingerprint): void
    {
        if ($link === null) {
            delete_user_meta($userId, self::LINK);
            return;
        }
        self::put($userId, self::LINK, [
            'remote_id' => $link->remoteId,
            'version' => $link->version,
            'snapshot' => $link->snapshot,
            'fingerprint' => $fingerprint,
        ]);
    }

    /**
     * Stores the links and last results of many users at once (a sync batch), in two
     * statements instead of a meta call each: `link` is the new link, null to remove it, or
     * false to leave it as it is. The plugin's own meta, so written without the meta hooks;
     * the users' meta caches are cleared.
     *
     * @param list<array{user_id: int, link: Link|null|false, fingerprint: ?string, result: string}> $entries
     */
    public static function saveMany(array $entries): void
    {
        global $wpdb;
        if ($entries === []) {
            return;
        }
        $ids = array_values(array_unique(array_map(static fn (array $e): int => (int) $e['user_id'], $entries)));
        $linkIds = [];
        $values = [];
        $now = time();
        foreach ($entries as $e) {
            $userId = (int) $e['user_id'];
            $last = (string) wp_json_encode(['result' => mb_substr($e['result'], 0, 500), 'at' => $now]);
            $values[] = $wpdb->prepare('(%d, %s, %s)', $userId, self::LAST, $last);
            if ($e['link'] === false) {
                continue;
            }
            $linkIds[] = $userId;
            if ($e['link'] instanceof Link) {
                $link = (string) wp_json_encode([
                    'remote_id' => $e['link']->remoteId,
                    'version' => $e['link']->version,
                    'snapshot' => $e['link']->snapshot,
                    'fingerprint' => $e['fingerprint'],
                ]);
                $values[] = $wpdb->prepare('(%d, %s, %s)', $userId, self::LINK, $link);
            }
        }
        $in = static fn (array $list): string => implode(',', array_map('intval', $list));
        $ok = $wpdb->query($wpdb->prepare(
            "DELETE FROM {$wpdb->usermeta} WHERE meta_key = %s AND user_id IN ({$in($ids)})",
            self::LAST,
        )) !== false;
        if ($ok && $linkIds !== []) {
            $ok = $wpdb->query($wpdb->prepare(
                "DELETE FROM {$wpdb->usermeta} WHERE meta_key = %s AND user_id IN ({$in($linkIds)})",
                self::LINK,
            )) !== false;
        }
        if ($ok) {
            $ok = $wpdb->query(
                "INSERT INTO {$wpdb->usermeta} (user_id, meta_key, meta_value) VALUES " . implode(', ', $values)
            ) !== false;
        }
        foreach ($ids as $userId) {
            wp_cache_delete($userId, 'user_meta');
        }
        if (!$ok) {
            // A deadlock's code (ER_LOCK_DEADLOCK), for an outbox settle to run its transaction again.
            $code = str_contains($wpdb->last_error, 'Deadlock found') ? 1213 : 0;
            throw new \RuntimeException('the links could not be saved: ' . $wpdb->last_error, $code);
        }
    }

    public static function recordResult(int $userId, string $result): void
    {
        self::put($userId, self::LAST, ['result' => mb_substr($result, 0, 500), 'at' => time()]);
    }

    /** @return array{result: string, at: int}|null */
    public static function lastResult(int $userId): ?array
    {
        $value = json_decode((string) get_user_meta($userId, self::LAST, true), true);
        if (!is_array($value) || !is_string($value['result'] ?? null)) {
            return null;
        }
        return ['result' => $value['result'], 'at' => (int) ($value['at'] ?? 0)];
    }

    /**
     * Every linked user: user id => link, in one query.
     *
     * @return array<int, array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}>
     */
    public static function all(): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT user_id, meta_value FROM {$wpdb->usermeta} WHERE meta_key = %s",
            self::LINK,
        ), ARRAY_A);
        return self::byUser($rows);
    }

    /**
     * The links among usermeta rows (user_id, meta_value), by user id.
     *
     * @return array<int, array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}>
     */
    private static function byUser(mixed $rows): array
    {
        global $wpdb;
        if (!is_array($rows)) {
            throw new \RuntimeException('the links could not be read: ' . $wpdb->last_error);
        }
        $out = [];
        foreach ($rows as $r) {
            $link = self::decode($r['meta_value']);
            if ($link !== null) {
                $out[(int) $r['user_id']] = $link;
            }
        }
        return $out;
    }

    /** @return array{remote_id: string, version: ?string, snapshot: ?string, fingerprint: ?string}|null */
    private static function decode(mixed $stored): ?array
    {
        $value = is_string($stored) && $stored !== '' ? json_decode($stored, true) : null;
        if (!is_array($value) || !is_string($value['remote_id'] ?? null) || $value['remote_id'] === '') {
            return null;
        }
        $text = static fn (string $key): ?string => is_string($value[$key] ?? null) && $value[$key] !== ''
            ? $value[$key]
            : null;
        return [
            'remote_id' => $value['remote_id'],
            'version' => $text('version'),
            'snapshot' => $text('snapshot'),
            'fingerprint' => $text('fingerprint'),
        ];
    }

    /** @param array<string, mixed> $value stored as JSON (update_user_meta unslashes: the JSON is slashed first) */
    private static function put(int $userId, string $key, array $value): void
    {
        $json = (string) wp_json_encode($value);
        if (update_user_meta($userId, $key, wp_slash($json)) !== false) {
            return;
        }
        // False also when nothing changed: the same value already stored, possibly by another
        // process since this one cached the user's meta (MySQL then counts no row updated).
        // Read it afresh: the same value is saved, not an error.
        wp_cache_delete($userId, 'user_meta');
        if (get_user_meta($userId, $key, true) !== $json) {
            global $wpdb;
            throw new \RuntimeException("user {$userId}: {$key} could not be saved: " . $wpdb->last_error);
        }
    }
}
