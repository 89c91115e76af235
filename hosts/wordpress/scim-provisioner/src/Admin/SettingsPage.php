<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\Plugin;

/** Settings → SCIM Provisioning: the tabs, and what every tab and action shares. */
final class SettingsPage
{
    public const SLUG = 'scim-provisioner';
    public const CAPABILITY = 'manage_options';

    /** @var array<string, string> tab => title */
    public const TABS = [
        'client' => 'SCIM client',
        'mapping' => 'Attribute mapping',
        'provisioning' => 'Provisioning',
        'log' => 'Log',
        'server' => 'Server side',
    ];

    public static function addMenu(): void
    {
        $title = __('SCIM Provisioning', 'scim-provisioner');
        $hook = add_options_page($title, $title, self::CAPABILITY, self::SLUG, [self::class, 'render']);
        if ($hook !== false) {
            // The server tab handles its own POST before any output, so the new token is shown
            // in that response and never stored anywhere in plain text.
            add_action('load-' . $hook, [ServerTab::class, 'load']);
        }
    }

    /** @param array<string, string> $links */
    public static function pluginLinks(array $links): array
    {
        array_unshift($links, '<a href="' . esc_url(self::url('client')) . '">' . esc_html__('Settings') . '</a>');
        return $links;
    }

    public static function render(): void
    {
        self::requireCapability();
        $current = self::currentTab();
        echo '<div class="wrap" id="scim-provisioner">';
        echo '<h1>' . esc_html__('SCIM Provisioning', 'scim-provisioner') . '</h1>';
        echo '<nav class="nav-tab-wrapper" id="scim-tabs">';
        foreach (self::TABS as $tab => $title) {
            printf(
                '<a href="%s" id="scim-tab-%s" class="nav-tab%s">%s</a>',
                esc_url(self::url($tab)),
                esc_attr($tab),
                $tab === $current ? ' nav-tab-active' : '',
                esc_html($title)
            );
        }
        echo '</nav>';
        Notices::render();
        try {
            match ($current) {
                'client' => ClientTab::render(),
                'mapping' => MappingTab::render(),
                'provisioning' => ProvisioningTab::render(),
                'log' => LogTab::render(),
                'server' => ServerTab::render(),
            };
        } catch (\Throwable $e) {
            // The screen stays usable when the component cannot be loaded (no FFI, no binaries).
            $message = esc_html(self::describe($e));
            echo '<div class="notice notice-error" id="scim-screen-error"><p>' . $message . '</p></div>';
        }
        echo '</div>';
    }

    public static function currentTab(): string
    {
        $tab = isset($_GET['tab']) ? sanitize_key(wp_unslash((string) $_GET['tab'])) : 'client';
        return array_key_exists($tab, self::TABS) ? $tab : 'client';
    }

    /** @param array<string, scalar> $args */
    public static function url(string $tab, array $args = []): string
    {
        $query = array_merge(['page' => self::SLUG, 'tab' => $tab], $args);
        return add_query_arg($query, admin_url('options-general.php'));
    }

    /** The admin-post.php form's hidden fields: the action and its nonce. */
    public static function formFields(string $action): void
    {
        printf('<input type="hidden" name="action" value="%s">', esc_attr('scim_provisioner_' . $action));
        wp_nonce_field('scim_provisioner_' . $action);
    }

    public static function formOpen(string $action, string $id): void
    {
        printf('<form method="post" action="%s" id="%s">', esc_url(admin_url('admin-post.php')), esc_attr($id));
        self::formFields($action);
    }

    /**
     * Every action's gate: the capability first, then the nonce (check_admin_referer ends the
     * request with WordPress's "link expired" page, HTTP 403, when the nonce is missing or forged).
     */
    public static function authorize(string $action): void
    {
        self::requireCapability();
        check_admin_referer('scim_provisioner_' . $action);
    }

    public static function requireCapability(): void
    {
        if (!current_user_can(self::CAPABILITY)) {
            wp_die(esc_html__('Sorry, you are not allowed to manage SCIM provisioning.', 'scim-provisioner'), 403);
        }
    }

    /** @param array<string, scalar> $args */
    public static function redirect(string $tab, array $args = []): never
    {
        wp_safe_redirect(self::url($tab, $args));
        exit;
    }

    public static function plugin(): Plugin
    {
        return Plugin::instance();
    }

    /** A failure as one sentence for the admin; the library's messages never hold secrets. */
    public static function describe(\Throwable $e): string
    {
        $message = trim($e->getMessage());
        return $message !== '' ? $message : 'The operation failed (' . get_class($e) . ').';
    }

    /**
     * Settings::save's messages (by setting name) as error notices, each a sentence.
     *
     * @param array<array-key, string> $errors
     */
    public static function pushErrors(string $code, array $errors): void
    {
        $i = 0;
        foreach ($errors as $error) {
            $text = ucfirst(trim((string) $error));
            Notices::push($code . '-' . $i++, 'error', str_ends_with($text, '.') ? $text : $text . '.');
        }
    }

    /** A POSTed text field, unslashed and trimmed ('' when absent). */
    public static function postText(string $name): string
    {
        return isset($_POST[$name]) && is_scalar($_POST[$name]) ? trim((string) wp_unslash($_POST[$name])) : '';
    }

    /** A POSTed secret, unslashed but not trimmed or sanitised: it is passed on as typed. */
    public static function postSecret(string $name): string
    {
        return isset($_POST[$name]) && is_string($_POST[$name]) ? (string) wp_unslash($_POST[$name]) : '';
    }

    public static function time(?int $timestamp): string
    {
        if ($timestamp === null || $timestamp <= 0) {
            return '—';
        }
        $format = get_option('date_format') . ' ' . get_option('time_format');
        return wp_date($format, $timestamp) ?: gmdate('Y-m-d H:i', $timestamp);
    }
}
