<?php

declare(strict_types=1);

/*
 * Removes everything the plugin keeps: its tables (outbox, log, SCIM groups), its options,
 * its cron jobs, its user meta (client links and the server role's SCIM data; the WordPress
 * users themselves stay) and the precompiled-component cache.
 */

if (!defined('WP_UNINSTALL_PLUGIN')) {
    exit;
}

require_once __DIR__ . '/autoload.php';

global $wpdb;

ScimProvisioner\WordPress\Cron::unschedule();
ScimProvisioner\WordPress\Schema::drop();
ScimProvisioner\WordPress\Metrics::drop();
delete_option(ScimProvisioner\WordPress\SyncProgress::OPTION);
delete_option(ScimProvisioner\WordPress\Settings::OPTION);
delete_option(ScimProvisioner\WordPress\ServerService::OPTION);
$wpdb->query($wpdb->prepare(
    "DELETE FROM {$wpdb->usermeta} WHERE meta_key LIKE %s OR meta_key LIKE %s",
    $wpdb->esc_like('_scim_provisioner_') . '%',
    $wpdb->esc_like('_scim_server_') . '%',
));
$wpdb->query($wpdb->prepare(
    "DELETE FROM {$wpdb->options} WHERE option_name LIKE %s OR option_name LIKE %s",
    $wpdb->esc_like('_transient_scim_provisioner_') . '%',
    $wpdb->esc_like('_transient_timeout_scim_provisioner_') . '%',
));
$cache = (defined('WP_CONTENT_DIR') ? WP_CONTENT_DIR : ABSPATH . 'wp-content') . '/cache/scim-provisioner';
if (is_dir($cache)) {
    foreach (glob($cache . '/*') ?: [] as $file) {
        @unlink($file);
    }
    @rmdir($cache);
}
