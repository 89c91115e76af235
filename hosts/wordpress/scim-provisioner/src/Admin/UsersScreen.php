<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/** The Users list: a "SCIM" column (state and last result) and a "Provision now" row action. */
final class UsersScreen
{
    private const COLUMN = 'scim_provisioner';

    /** @param array<string, string> $columns @return array<string, string> */
    public static function addColumn(array $columns): array
    {
        if (current_user_can(SettingsPage::CAPABILITY)) {
            $columns[self::COLUMN] = __('SCIM', 'scim-provisioner');
        }
        return $columns;
    }

    /** @param string $output */
    public static function renderColumn($output, string $column, int $userId): string
    {
        if ($column !== self::COLUMN) {
            return (string) $output;
        }
        try {
            $state = SettingsPage::plugin()->client()->userState($userId);
        } catch (\Throwable $e) {
            $unavailable = esc_html__('unavailable', 'scim-provisioner');
            return '<span class="scim-state scim-unavailable">' . $unavailable . '</span>';
        }
        $html = '<span class="scim-state">' . esc_html((string) $state['state']) . '</span>';
        if (!empty($state['last_result'])) {
            $html .= '<br><span class="scim-last-result">' . esc_html((string) $state['last_result']) . '</span>';
        }
        if (!empty($state['last_at'])) {
            $when = SettingsPage::time((int) $state['last_at']);
            $html .= '<br><small class="scim-last-at">' . esc_html($when) . '</small>';
        }
        return $html;
    }

    /** @param array<string, string> $actions @return array<string, string> */
    public static function rowActions(array $actions, \WP_User $user): array
    {
        if (current_user_can(SettingsPage::CAPABILITY)) {
            $url = wp_nonce_url(
                add_query_arg(
                    ['action' => 'scim_provisioner_provision_user', 'user_id' => $user->ID],
                    admin_url('admin-post.php')
                ),
                self::nonceAction($user->ID)
            );
            $label = esc_html__('Provision now', 'scim-provisioner');
            $link = sprintf('<a class="scim-provision-now" href="%s">%s</a>', esc_url($url), $label);
            $actions['scim_provision'] = $link;
        }
        return $actions;
    }

    /** admin-post (a nonce'd link, one nonce per user): provisions one user at once. */
    public static function provisionNow(): void
    {
        SettingsPage::requireCapability();
        $userId = isset($_REQUEST['user_id']) ? absint($_REQUEST['user_id']) : 0;
        check_admin_referer(self::nonceAction($userId));
        $user = get_userdata($userId);
        if ($user === false) {
            Notices::push('provision-now', 'error', __('That user no longer exists.', 'scim-provisioner'));
        } else {
            try {
                $result = SettingsPage::plugin()->client()->provisionNow($userId);
            } catch (\Throwable $e) {
                $result = ['ok' => false, 'message' => SettingsPage::describe($e)];
            }
            $message = $user->user_login . ': ' . (string) ($result['message'] ?? '');
            Notices::push('provision-now', !empty($result['ok']) ? 'success' : 'error', $message);
        }
        wp_safe_redirect(admin_url('users.php'));
        exit;
    }

    /** admin_notices on the Users screen: the result of "Provision now". */
    public static function notices(): void
    {
        $screen = get_current_screen();
        if ($screen !== null && $screen->id === 'users' && current_user_can(SettingsPage::CAPABILITY)) {
            Notices::render();
        }
    }

    private static function nonceAction(int $userId): string
    {
        return 'scim_provisioner_provision_user_' . $userId;
    }
}
