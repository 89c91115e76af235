<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/**
 * Everything the plugin adds to wp-admin. The plugin's bootstrap calls register() when
 * is_admin() (admin-post.php counts as admin, so the form handlers below are reached).
 */
final class AdminHooks
{
    /** The admin-post actions, each `admin_post_scim_provisioner_<name>`, and who handles it. */
    private const ACTIONS = [
        'save_client' => [ClientTab::class, 'save'],
        'save_mapping' => [MappingTab::class, 'save'],
        'save_provisioning' => [ProvisioningTab::class, 'save'],
        'plan_sync' => [ProvisioningTab::class, 'plan'],
        'run_sync' => [ProvisioningTab::class, 'run'],
        'retry' => [LogTab::class, 'retry'],
        'provision_user' => [UsersScreen::class, 'provisionNow'],
    ];

    public static function register(): void
    {
        add_action('admin_menu', [SettingsPage::class, 'addMenu']);
        add_action('wp_dashboard_setup', [DashboardWidget::class, 'register']);
        add_action('load-index.php', [DashboardWidget::class, 'load']);
        foreach (self::ACTIONS as $name => $handler) {
            add_action('admin_post_scim_provisioner_' . $name, $handler);
        }
        add_filter('manage_users_columns', [UsersScreen::class, 'addColumn']);
        add_filter('manage_users_custom_column', [UsersScreen::class, 'renderColumn'], 10, 3);
        add_filter('user_row_actions', [UsersScreen::class, 'rowActions'], 10, 2);
        add_action('admin_notices', [UsersScreen::class, 'notices']);
        add_filter('plugin_action_links_scim-provisioner/scim-provisioner.php', [SettingsPage::class, 'pluginLinks']);
    }
}
