<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/**
 * The SCIM client tab: where the site's users go (base URL, authentication, timeout) and
 * "Save and Test Credentials". Secrets are write-only: the form never holds a saved one, it
 * says whether one is saved, and an empty field keeps it. Settings::save clears a saved secret
 * when the base URL moves to another origin and none is given in the same save; this tab says so.
 */
final class ClientTab
{
    private const PAGE = 'scim-provisioner-client';

    public static function render(): void
    {
        $saved = SettingsPage::plugin()->settings()->all();
        // After a rejected save the admin's input comes back (never the secrets), with the errors.
        $draft = Notices::unstash('client_form');
        $form = is_array($draft) ? array_merge($saved, $draft) : $saved;
        $capabilities = Notices::unstash('client_capabilities');
        if (is_array($capabilities) && $capabilities !== []) {
            echo '<h2>' . esc_html__('What the server supports', 'scim-provisioner') . '</h2>';
            $rows = [];
            foreach ($capabilities as $name => $value) {
                $rows[] = ['cells' => [(string) $name, self::capabilityText($value)]];
            }
            $headers = [__('Feature', 'scim-provisioner'), __('Supported', 'scim-provisioner')];
            echo Html::table('scim-capabilities', $headers, $rows);
        }
        self::addFields($form, $saved);
        SettingsPage::formOpen('save_client', 'scim-client-form');
        do_settings_sections(self::PAGE);
        echo '<p class="submit">';
        $saveAndTest = __('Save and Test Credentials', 'scim-provisioner');
        submit_button($saveAndTest, 'primary', 'save_test', false, ['id' => 'scim-save-test']);
        echo ' ';
        submit_button(__('Save Changes'), 'secondary', 'save_only', false, ['id' => 'scim-save']);
        echo '</p></form>';
    }

    /** admin-post: saves through Settings::save, then tests the connection when asked. */
    public static function save(): void
    {
        SettingsPage::authorize('save_client');
        $plugin = SettingsPage::plugin();
        $before = $plugin->settings()->all();
        $seconds = SettingsPage::postText('timeout_s');
        $input = [
            'base_url' => SettingsPage::postText('base_url'),
            'auth' => in_array(SettingsPage::postText('auth'), ['basic', 'oauth2'], true)
                ? SettingsPage::postText('auth') : 'bearer',
            'basic_user' => sanitize_text_field(SettingsPage::postText('basic_user')),
            'token_url' => SettingsPage::postText('token_url'),
            'client_id' => SettingsPage::postText('client_id'),
            'oauth2_scope' => SettingsPage::postText('oauth2_scope'),
            'oauth2_audience' => SettingsPage::postText('oauth2_audience'),
            'client_auth' => SettingsPage::postText('client_auth') === 'client_secret_post'
                ? 'client_secret_post' : 'client_secret_basic',
        ];
        $errors = [];
        if (!preg_match('/^\d{1,3}$/', $seconds)) {
            $errors[] = __('The timeout is a whole number of seconds from 1 to 600.', 'scim-provisioner');
        } else {
            $input['timeout_ms'] = (int) $seconds * 1000;
        }
        foreach (['token', 'basic_password', 'client_secret'] as $secret) {
            $value = SettingsPage::postSecret($secret);
            if ($value !== '') {
                $input[$secret] = $value;
            }
        }
        if ($errors === []) {
            $errors = $plugin->settings()->save($input);
        }
        if ($errors !== []) {
            SettingsPage::pushErrors('client-error', $errors);
            Notices::push('client-not-saved', 'error', __(
                'Nothing was saved: correct the settings above. Enter the token again if you changed it.',
                'scim-provisioner'
            ));
            // Only the non-secret fields come back into the form.
            Notices::stash('client_form', [
                'base_url' => $input['base_url'],
                'auth' => $input['auth'],
                'basic_user' => $input['basic_user'],
                'token_url' => $input['token_url'],
                'client_id' => $input['client_id'],
                'oauth2_scope' => $input['oauth2_scope'],
                'oauth2_audience' => $input['oauth2_audience'],
                'client_auth' => $input['client_auth'],
                'timeout_s' => $seconds,
            ]);
            SettingsPage::redirect('client');
        }
        self::sayWhatWasCleared($before, $plugin->settings()->all());
        Notices::push('client-saved', 'success', __('Settings saved.'));
        if (isset($_POST['save_test'])) {
            self::test();
        }
        SettingsPage::redirect('client');
    }

    /** @param array<string, mixed> $form @param array<string, mixed> $saved */
    private static function addFields(array $form, array $saved): void
    {
        $title = __('Connection to the SCIM server', 'scim-provisioner');
        add_settings_section('connection', $title, static function (): void {
            echo '<p>' . esc_html__(
                'Paste the SCIM base URL and the bearer token from the server '
                . '(for a WordPress server: its Server side tab). Changing the base URL to another server '
                . 'needs the token again: a saved token is only ever sent to the server it was saved for.',
                'scim-provisioner'
            ) . '</p>';
        }, self::PAGE);
        $field = static function (string $id, string $title, callable $render, string $labelFor = ''): void {
            $args = $labelFor !== '' ? ['label_for' => $labelFor] : [];
            add_settings_field($id, $title, $render, self::PAGE, 'connection', $args);
        };
        $field('base_url', __('SCIM base URL', 'scim-provisioner'), static function () use ($form): void {
            echo Html::input('url', 'base_url', 'scim-base-url', (string) ($form['base_url'] ?? ''), [
                'class' => 'regular-text code',
                'placeholder' => 'https://idp.example/scim/v2',
            ]);
        }, 'scim-base-url');
        $field('auth', __('Authentication', 'scim-provisioner'), static function () use ($form): void {
            echo Html::radios('auth', 'scim-auth-', [
                'bearer' => __('Bearer token', 'scim-provisioner'),
                'basic' => __('HTTP Basic (user and password)', 'scim-provisioner'),
                'oauth2' => __('OAuth 2.0 client credentials (a token from the authorization server)', 'scim-provisioner'),
            ], (string) ($form['auth'] ?? 'bearer'));
        });
        $field('token', __('SCIM bearer token', 'scim-provisioner'), static function () use ($saved): void {
            echo Html::input('password', 'token', 'scim-token', '', [
                'class' => 'regular-text',
                'autocomplete' => 'new-password',
            ]);
            echo self::secretHint(!empty($saved['token_saved']), 'scim-token-state', __('token', 'scim-provisioner'));
        }, 'scim-token');
        $field('basic_user', __('Basic user', 'scim-provisioner'), static function () use ($form): void {
            echo Html::input('text', 'basic_user', 'scim-basic-user', (string) ($form['basic_user'] ?? ''), [
                'class' => 'regular-text',
                'autocomplete' => 'off',
            ]);
        }, 'scim-basic-user');
        $field('basic_password', __('Basic password', 'scim-provisioner'), static function () use ($saved): void {
            echo Html::input('password', 'basic_password', 'scim-basic-password', '', [
                'class' => 'regular-text',
                'autocomplete' => 'new-password',
            ]);
            $what = __('password', 'scim-provisioner');
            echo self::secretHint(!empty($saved['basic_password_saved']), 'scim-basic-password-state', $what);
        }, 'scim-basic-password');
        self::addOAuth2Fields($field, $form, $saved);
        $field('timeout', __('Timeout (seconds)', 'scim-provisioner'), static function () use ($form): void {
            $seconds = isset($form['timeout_s'])
                ? (string) $form['timeout_s']
                : (string) intdiv((int) ($form['timeout_ms'] ?? 30000), 1000);
            echo Html::input('number', 'timeout_s', 'scim-timeout', $seconds, [
                'min' => '1',
                'max' => '600',
                'class' => 'small-text',
            ]);
        }, 'scim-timeout');
    }

    /**
     * OAuth 2.0 client credentials: the token endpoint, the client id, the write-only client
     * secret (sent only to the token endpoint), and the optional scope, audience and client
     * authentication.
     *
     * @param callable(string, string, callable, string=): void $field
     * @param array<string, mixed> $form
     * @param array<string, mixed> $saved
     */
    private static function addOAuth2Fields(callable $field, array $form, array $saved): void
    {
        $text = static function (string $name, string $id, string $placeholder = '') use ($form): \Closure {
            return static function () use ($form, $name, $id, $placeholder): void {
                echo Html::input('text', $name, $id, (string) ($form[$name] ?? ''), [
                    'class' => 'regular-text code',
                    'autocomplete' => 'off',
                    'placeholder' => $placeholder,
                ]);
            };
        };
        $field('token_url', __('OAuth 2.0 token URL', 'scim-provisioner'), static function () use ($form): void {
            echo Html::input('url', 'token_url', 'scim-token-url', (string) ($form['token_url'] ?? ''), [
                'class' => 'regular-text code',
                'placeholder' => 'https://idp.example/oauth2/token',
            ]);
        }, 'scim-token-url');
        $field('client_id', __('Client id', 'scim-provisioner'), $text('client_id', 'scim-client-id'), 'scim-client-id');
        $field('client_secret', __('Client secret', 'scim-provisioner'), static function () use ($saved): void {
            echo Html::input('password', 'client_secret', 'scim-client-secret', '', [
                'class' => 'regular-text',
                'autocomplete' => 'new-password',
            ]);
            $what = __('client secret', 'scim-provisioner');
            echo self::secretHint(!empty($saved['client_secret_saved']), 'scim-client-secret-state', $what);
            echo Html::description(__(
                'Sent only to the token URL; a token URL on another server needs it again.',
                'scim-provisioner'
            ));
        }, 'scim-client-secret');
        $field('oauth2_scope', __('Scope (optional)', 'scim-provisioner'), $text('oauth2_scope', 'scim-oauth2-scope'), 'scim-oauth2-scope');
        $field(
            'oauth2_audience',
            __('Audience (optional)', 'scim-provisioner'),
            $text('oauth2_audience', 'scim-oauth2-audience'),
            'scim-oauth2-audience'
        );
        $field('client_auth', __('Client authentication', 'scim-provisioner'), static function () use ($form): void {
            echo Html::select('client_auth', 'scim-client-auth', [
                'client_secret_basic' => __('HTTP Basic (client_secret_basic)', 'scim-provisioner'),
                'client_secret_post' => __('In the form body (client_secret_post)', 'scim-provisioner'),
            ], (string) ($form['client_auth'] ?? 'client_secret_basic'));
        }, 'scim-client-auth');
    }

    /**
     * Says when the save cleared a saved secret (the base URL moved to another origin).
     *
     * @param array<string, mixed> $before
     * @param array<string, mixed> $after
     */
    private static function sayWhatWasCleared(array $before, array $after): void
    {
        $cleared = [];
        if (!empty($before['token_saved']) && empty($after['token_saved'])) {
            $cleared[] = __('token', 'scim-provisioner');
        }
        if (!empty($before['basic_password_saved']) && empty($after['basic_password_saved'])) {
            $cleared[] = __('basic password', 'scim-provisioner');
        }
        if (!empty($before['client_secret_saved']) && empty($after['client_secret_saved'])) {
            Notices::push('client-oauth2-secret-cleared', 'warning', __(
                'The token URL now points at another server, so the saved client secret was cleared: '
                . 'it is never sent to a server it was not saved for. Enter it again.',
                'scim-provisioner'
            ));
        }
        if ($cleared !== []) {
            Notices::push('client-secret-cleared', 'warning', sprintf(
                /* translators: %s: "token" and/or "basic password" */
                __(
                    'The base URL now points at another server, so the saved %s was cleared: '
                    . 'it is never sent to a server it was not saved for. Enter the credentials for the new server.',
                    'scim-provisioner'
                ),
                implode(' and ', $cleared)
            ));
        }
    }

    /** "Save and Test Credentials": the component reads the server's ServiceProviderConfig. */
    private static function test(): void
    {
        try {
            $result = SettingsPage::plugin()->client()->testConnection();
        } catch (\Throwable $e) {
            $result = ['ok' => false, 'message' => SettingsPage::describe($e)];
        }
        $message = (string) ($result['message'] ?? '');
        if (!empty($result['ok'])) {
            Notices::push('client-test', 'success', __('Connection successful: ', 'scim-provisioner') . $message);
            $capabilities = is_array($result['capabilities'] ?? null) ? $result['capabilities'] : [];
            Notices::stash('client_capabilities', $capabilities);
        } else {
            Notices::push('client-test', 'error', __('Test failed: ', 'scim-provisioner') . $message);
        }
    }

    private static function secretHint(bool $saved, string $id, string $what): string
    {
        $text = $saved
            /* translators: %s: "token" or "password" */
            ? __(
                'A %s is saved (never shown). Leave empty to keep it; type a new one to replace it.',
                'scim-provisioner'
            )
            /* translators: %s: "token" or "password" */
            : __('No %s saved.', 'scim-provisioner');
        return Html::description(sprintf($text, $what), $id);
    }

    private static function capabilityText(mixed $value): string
    {
        return match (true) {
            is_bool($value) => $value ? 'yes' : 'no',
            $value === null => '—',
            is_scalar($value) => (string) $value,
            default => (string) wp_json_encode($value),
        };
    }
}
