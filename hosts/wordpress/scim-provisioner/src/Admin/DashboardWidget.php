<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\Metrics;
use ScimProvisioner\WordPress\MetricsRoutes;
use ScimProvisioner\WordPress\SyncProgress;

/**
 * The dashboard widget (issue 31, part 3): the counters {@see Metrics} keeps (users
 * provisioned by action and result, requests, retries, the outbox), the last sync's
 * progress, and the Prometheus route with its token: generated or rotated here, shown
 * once, only its SHA-256 kept. Administrators only.
 */
final class DashboardWidget
{
    public const ID = 'scim_provisioner_metrics';
    private const ACTION = 'scim_provisioner_metrics_token';

    /** The plaintext of a token generated in this request; never stored. */
    private static ?string $newToken = null;

    /** wp_dashboard_setup */
    public static function register(): void
    {
        if (!current_user_can('manage_options')) {
            return;
        }
        wp_add_dashboard_widget(self::ID, __('SCIM provisioning', 'scim-provisioner'), [self::class, 'render']);
    }

    /** load-index.php: a token rotation posted from the widget, before any output. */
    public static function load(): void
    {
        if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'POST' || !isset($_POST['scim_metrics_token'])) {
            return;
        }
        SettingsPage::requireCapability();
        check_admin_referer(self::ACTION);
        self::$newToken = Metrics::rotateToken();
        // The page must not be cached anywhere: it holds the token.
        nocache_headers();
    }

    public static function render(): void
    {
        $plugin = SettingsPage::plugin();
        $rows = [];
        foreach (Metrics::summary($plugin) as $name => $value) {
            $rows[] = ['cells' => [$name, (string) round($value, 3)]];
        }
        echo Html::table('scim-metrics', [__('Counter', 'scim-provisioner'), __('Value', 'scim-provisioner')], $rows);

        $p = SyncProgress::read();
        if ($p['total'] > 0 || $p['running']) {
            $text = sprintf(
                /* translators: 1: Running or Last, 2: users done, 3: users in all, 4: users/s, 5: remaining, 6: failures */
                __('%1$s sync: %2$d of %3$d users, %4$s users/s, %5$d remaining, %6$d failed', 'scim-provisioner'),
                $p['running'] ? __('Running', 'scim-provisioner') : __('Last', 'scim-provisioner'),
                $p['done'],
                $p['total'],
                (string) $p['per_second'],
                $p['remaining'],
                $p['failed'],
            );
            echo '<p id="scim-metrics-sync">' . esc_html($text) . '</p>';
        }

        echo '<p>' . esc_html__('Prometheus scrapes', 'scim-provisioner') . ' <code id="scim-metrics-url">'
            . esc_html(rest_url(MetricsRoutes::NAMESPACE . '/metrics')) . '</code> '
            . esc_html__('with the metrics token as a bearer token (it cannot provision anything).', 'scim-provisioner')
            . '</p>';
        if (self::$newToken !== null) {
            echo '<div class="notice notice-warning inline"><p><strong>' . esc_html__(
                'Copy this metrics token now: it is shown only this once.',
                'scim-provisioner'
            ) . '</strong></p><p><input type="text" readonly class="large-text code" id="scim-metrics-token" value="'
                . esc_attr(self::$newToken) . '"></p></div>';
        }
        echo '<form method="post" action="' . esc_url(admin_url('index.php')) . '" id="scim-metrics-token-form">';
        wp_nonce_field(self::ACTION);
        $label = Metrics::hasToken()
            ? __('Rotate the metrics token', 'scim-provisioner')
            : __('Generate a metrics token', 'scim-provisioner');
        submit_button($label, 'secondary', 'scim_metrics_token', false, ['id' => 'scim-metrics-token-button']);
        echo '</form>';
    }
}
