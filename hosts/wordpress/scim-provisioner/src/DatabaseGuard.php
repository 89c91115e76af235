<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * Runs work that must survive losing the database: when MariaDB goes away, wpdb retries the
 * connection and then calls wp_die() (dead_db()), which would end the process in the middle
 * of a delivery. While the work runs, wp_die() throws {@see DatabaseUnavailableException}
 * instead, so the worker or the cron job stops cleanly with a message, and the next run picks
 * up from what was recorded.
 */
final class DatabaseGuard
{
    private const FILTERS = [
        'wp_die_handler', 'wp_die_ajax_handler', 'wp_die_json_handler', 'wp_die_jsonp_handler',
        'wp_die_xmlrpc_handler', 'wp_die_xml_handler',
    ];

    private static int $depth = 0;

    /**
     * @template T
     * @param callable(): T $work
     * @return T
     */
    public static function run(callable $work): mixed
    {
        if (self::$depth++ === 0) {
            foreach (self::FILTERS as $filter) {
                add_filter($filter, [self::class, 'handler'], PHP_INT_MAX);
            }
        }
        try {
            return $work();
        } finally {
            if (--self::$depth === 0) {
                foreach (self::FILTERS as $filter) {
                    remove_filter($filter, [self::class, 'handler'], PHP_INT_MAX);
                }
            }
        }
    }

    /** @internal */
    public static function handler(): callable
    {
        return [self::class, 'die'];
    }

    /** @internal a wp_die() handler */
    public static function die(mixed $message = ''): never
    {
        $text = match (true) {
            $message instanceof \WP_Error => $message->get_error_message(),
            is_string($message) => $message,
            default => '',
        };
        $text = trim(preg_replace('/\s+/', ' ', wp_strip_all_tags($text)) ?? '');
        $text = $text === '' ? 'no message' : mb_substr($text, 0, 300);
        throw new DatabaseUnavailableException('WordPress stopped (wp_die): ' . $text);
    }
}
