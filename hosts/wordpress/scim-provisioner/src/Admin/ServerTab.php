<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/**
 * The server-side tab: WordPress as the SCIM server an identity provider provisions into. The
 * base URL to give the identity provider, the bearer token (generated or rotated here, shown in
 * the response to that POST only: WordPress keeps only its hash), and the users the identity
 * provider created.
 */
final class ServerTab
{
    private const ACTION = 'scim_provisioner_rotate_token';

    /** The plaintext of a token generated in this request; never stored. */
    private static ?string $newToken = null;

    /** load-{page}: runs before any output, so a failed check ends the request cleanly. */
    public static function load(): void
    {
        $isPost = ($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST';
        if (SettingsPage::currentTab() !== 'server' || !$isPost || !isset($_POST['rotate_token'])) {
            return;
        }
        SettingsPage::requireCapability();
        check_admin_referer(self::ACTION);
        try {
            self::$newToken = SettingsPage::plugin()->server()->rotateToken();
        } catch (\Throwable $e) {
            $message = __('No token was generated: ', 'scim-provisioner') . SettingsPage::describe($e);
            Notices::push('server-token', 'error', $message);
        }
        // The page must not be cached anywhere: it holds the token.
        nocache_headers();
    }

    public static function render(): void
    {
        $server = SettingsPage::plugin()->server();
        echo '<h2>' . esc_html__('SCIM base URL', 'scim-provisioner') . '</h2>';
        $hint = __('Give the identity provider this base URL and the bearer token below.', 'scim-provisioner');
        echo Html::description($hint);
        echo '<p>' . self::copyField('scim-server-base-url', rest_url('scim/v2')) . '</p>';

        echo '<h2>' . esc_html__('Bearer token', 'scim-provisioner') . '</h2>';
        if (self::$newToken !== null) {
            echo '<div class="notice notice-warning inline" id="scim-new-token-notice"><p><strong>' . esc_html__(
                'Copy this token now: it is shown only this once. '
                . 'WordPress keeps only its hash; if it is lost, generate a new one.',
                'scim-provisioner'
            ) . '</strong></p><p>' . self::copyField('scim-new-token', self::$newToken) . '</p></div>';
        }
        $hasToken = $server->hasToken();
        $status = $hasToken
            ? __(
                'A token is set. Rotating it stops the old one at once: update the identity provider with the new one.',
                'scim-provisioner'
            )
            : __('No token yet: the SCIM endpoints refuse every request until one is generated.', 'scim-provisioner');
        echo '<p id="scim-token-status">' . esc_html($status) . '</p>';
        printf('<form method="post" action="%s" id="scim-rotate-form">', esc_url(SettingsPage::url('server')));
        wp_nonce_field(self::ACTION);
        $attributes = ['id' => 'scim-rotate-token'];
        if ($hasToken) {
            $question = __('The current token stops working at once. Rotate it?', 'scim-provisioner');
            $attributes['onclick'] = "return confirm('" . esc_js($question) . "')";
        }
        $label = $hasToken ? __('Rotate token', 'scim-provisioner') : __('Generate token', 'scim-provisioner');
        submit_button($label, $hasToken ? 'secondary' : 'primary', 'rotate_token', false, $attributes);
        echo '</form>';

        echo '<h2>' . esc_html__('Users the identity provider created', 'scim-provisioner') . '</h2>';
        $users = $server->createdUsers();
        if ($users === []) {
            echo '<p id="scim-created-users">' . esc_html__('None yet.', 'scim-provisioner') . '</p>';
            return;
        }
        $headers = [
            __('User', 'scim-provisioner'),
            __('SCIM id', 'scim-provisioner'),
            __('Created', 'scim-provisioner'),
        ];
        echo Html::tableHead('scim-created-users', $headers);
        foreach ($users as $user) {
            printf(
                '<tr data-user="%s"><td><a href="%s">%s</a></td><td><code>%s</code></td><td>%s</td></tr>',
                esc_attr((string) $user['user_login']),
                esc_url(get_edit_user_link((int) $user['user_id'])),
                esc_html((string) $user['user_login']),
                esc_html((string) $user['scim_id']),
                esc_html(SettingsPage::time((int) $user['created_at']))
            );
        }
        echo '</tbody></table>';
    }

    /** A read-only field the admin copies from (selected on focus). */
    private static function copyField(string $id, string $value): string
    {
        return Html::input('text', '', $id, $value, [
            'readonly' => 'readonly',
            'class' => 'large-text code',
            'onfocus' => 'this.select()',
        ]);
    }
}
