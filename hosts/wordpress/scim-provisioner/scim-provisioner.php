<?php

/**
 * Plugin Name:       SCIM Provisioning
 * Plugin URI:        https://github.com/scim-provisioner/scim-provisioner
 * Description:       Keeps WordPress users in step with other applications over SCIM 2.0 (client and server roles).
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.2
 * License:           MIT OR Apache-2.0
 * Text Domain:       scim-provisioner
 */

declare(strict_types=1);

if (!defined('ABSPATH')) {
    exit;
}

require_once __DIR__ . '/autoload.php';

register_activation_hook(__FILE__, static function (): void {
    ScimProvisioner\WordPress\Schema::install();
    ScimProvisioner\WordPress\Cron::reschedule();
    // Creates the precompiled-component cache (0700) as the web server's user.
    ScimProvisioner\WordPress\Plugin::instance()->cacheStatus();
});

register_deactivation_hook(__FILE__, static function (): void {
    ScimProvisioner\WordPress\Cron::unschedule();
});

ScimProvisioner\WordPress\Plugin::boot();
