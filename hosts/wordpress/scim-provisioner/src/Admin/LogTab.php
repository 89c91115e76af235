<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/** The log tab: every delivery and its outcome, a failures filter, and Retry. */
final class LogTab
{
    public static function render(): void
    {
        $failuresOnly = !empty($_GET['failures']);
        if (!class_exists('WP_List_Table')) {
            require_once ABSPATH . 'wp-admin/includes/class-wp-list-table.php';
        }
        $table = new LogListTable(SettingsPage::plugin()->log(), $failuresOnly);
        $table->prepare_items();
        // The message says what went wrong and what to check: give it the room.
        echo '<style>#scim-log .column-message{width:40%}#scim-log .column-at{width:12%}</style>';
        echo '<p id="scim-retry-help">' . esc_html__(
            'Retry sends the user as WordPress holds them now, not as they were when the delivery failed.',
            'scim-provisioner'
        ) . '</p>';
        $table->views();
        echo '<form method="get" id="scim-log">';
        echo Html::input('hidden', 'page', '', SettingsPage::SLUG) . Html::input('hidden', 'tab', '', 'log');
        if ($failuresOnly) {
            echo '<input type="hidden" name="failures" value="1">';
        }
        $table->display();
        echo '</form>';
    }

    /** admin-post (a nonce'd link): sends the logged delivery's user again. */
    public static function retry(): void
    {
        SettingsPage::authorize('retry');
        $logId = isset($_REQUEST['log_id']) ? absint($_REQUEST['log_id']) : 0;
        try {
            $result = SettingsPage::plugin()->client()->retry($logId);
        } catch (\Throwable $e) {
            $result = ['ok' => false, 'message' => SettingsPage::describe($e)];
        }
        Notices::push('retry', !empty($result['ok']) ? 'success' : 'error', (string) ($result['message'] ?? ''));
        SettingsPage::redirect('log');
    }
}
