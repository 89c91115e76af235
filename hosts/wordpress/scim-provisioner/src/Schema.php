<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The plugin's tables in WordPress's database, created and upgraded with dbDelta; the
 * version installed is kept in the option `scim_provisioner_schema`.
 *
 * - `{prefix}scim_outbox`: the client role's queued user events (see {@see Outbox});
 * - `{prefix}scim_outbox_users` (version 2): one row per user ever queued, which
 *   {@see Outbox::enqueue()} locks so that a user's events are claimable in commit order;
 * - `{prefix}scim_log`: what each delivery did (see {@see LogRepository});
 * - `{prefix}scim_groups`, `{prefix}scim_group_members`: the server role's SCIM Groups (see
 *   {@see WpDirectory}: groups are the plugin's own, not WordPress roles).
 */
final class Schema
{
    /**
     * 1: outbox, log, groups, group members. 2: `scim_outbox_users` (dbDelta only adds it:
     * queued events and every other table are left as they are).
     */
    public const VERSION = 2;
    public const OPTION = 'scim_provisioner_schema';

    /** @return array<string, string> logical name => table name */
    public static function tables(): array
    {
        global $wpdb;
        return [
            'outbox' => $wpdb->prefix . 'scim_outbox',
            'outbox_users' => $wpdb->prefix . 'scim_outbox_users',
            'log' => $wpdb->prefix . 'scim_log',
            'groups' => $wpdb->prefix . 'scim_groups',
            'group_members' => $wpdb->prefix . 'scim_group_members',
        ];
    }

    public static function install(): void
    {
        global $wpdb;
        require_once ABSPATH . 'wp-admin/includes/upgrade.php';
        $t = self::tables();
        $charset = $wpdb->get_charset_collate();
        // dbDelta's format: two spaces after PRIMARY KEY, one field per line.
        dbDelta("CREATE TABLE {$t['outbox']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  user_id bigint(20) unsigned NOT NULL,
  event varchar(20) NOT NULL,
  user_json longtext NOT NULL,
  link_json longtext NULL,
  created_at bigint(20) NOT NULL,
  attempts int(11) NOT NULL DEFAULT 0,
  next_attempt_at bigint(20) NOT NULL DEFAULT 0,
  last_error text NULL,
  last_status int(11) NULL,
  parked tinyint(1) NOT NULL DEFAULT 0,
  claimed_by varchar(64) NULL,
  claimed_until bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  KEY user_id (user_id,id),
  KEY due (parked,next_attempt_at)
) {$charset};");
        // InnoDB's row lock on a user's row is what orders that user's enqueues (Outbox::enqueue).
        dbDelta("CREATE TABLE {$t['outbox_users']} (
  user_id bigint(20) unsigned NOT NULL,
  enqueued bigint(20) unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY  (user_id)
) ENGINE=InnoDB {$charset};");
        dbDelta("CREATE TABLE {$t['log']} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  at bigint(20) NOT NULL,
  user_id bigint(20) unsigned NOT NULL DEFAULT 0,
  user_login varchar(60) NOT NULL DEFAULT '',
  operation varchar(20) NOT NULL,
  outcome varchar(20) NOT NULL,
  status int(11) NULL,
  message text NULL,
  duration_ms int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  KEY outcome (outcome,id),
  KEY user_id (user_id,id)
) {$charset};");
        dbDelta("CREATE TABLE {$t['groups']} (
  id varchar(64) NOT NULL,
  version bigint(20) NOT NULL DEFAULT 1,
  created varchar(32) NOT NULL,
  last_modified varchar(32) NOT NULL,
  unique_key varchar(191) NULL,
  external_id varchar(191) NULL,
  json longtext NOT NULL,
  seq bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  PRIMARY KEY  (id),
  UNIQUE KEY seq (seq),
  UNIQUE KEY unique_key (unique_key),
  KEY external_id (external_id)
) {$charset};");
        dbDelta("CREATE TABLE {$t['group_members']} (
  group_id varchar(64) NOT NULL,
  member_key varchar(191) NOT NULL,
  member_value varchar(191) NULL,
  PRIMARY KEY  (group_id,member_key),
  KEY member_key (member_key)
) {$charset};");
        update_option(self::OPTION, self::VERSION, true);
    }

    /** Runs install() when the recorded schema is older (a plugin update without re-activation). */
    public static function maybeUpgrade(): void
    {
        if ((int) get_option(self::OPTION, 0) < self::VERSION) {
            self::install();
        }
    }

    public static function drop(): void
    {
        global $wpdb;
        foreach (self::tables() as $table) {
            // The table names are the plugin's own, not input.
            $wpdb->query("DROP TABLE IF EXISTS {$table}"); // phpcs:ignore WordPress.DB.PreparedSQL
        }
        delete_option(self::OPTION);
    }
}
