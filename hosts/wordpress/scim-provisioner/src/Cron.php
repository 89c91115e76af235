<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * WP-Cron jobs:
 * - `scim_provisioner_reconcile`: the scheduled full sync, on the schedule the admin chose
 *   (hourly, twicedaily, daily; off unschedules it). It keeps the deletion threshold: a
 *   sync over it sends nothing and says so in the log.
 * - `scim_provisioner_drain`: every five minutes, delivers the outbox rows whose retry time
 *   has come (and anything automatic mode could not deliver), and prunes the log.
 *
 * Both run wherever WP-Cron runs: wp-cron.php under the web server (which needs FFI there),
 * or `bin/worker` from the system's cron (the PHP CLI allows FFI by default).
 */
final class Cron
{
    public const RECONCILE = 'scim_provisioner_reconcile';
    public const DRAIN = 'scim_provisioner_drain';
    public const EVERY_FIVE_MINUTES = 'scim_provisioner_every_five_minutes';

    private function __construct(private readonly Plugin $plugin)
    {
    }

    public static function register(Plugin $plugin): void
    {
        $cron = new self($plugin);
        add_filter('cron_schedules', [self::class, 'schedules']);
        add_action(self::RECONCILE, [$cron, 'reconcile']);
        add_action(self::DRAIN, [$cron, 'drain']);
        // A saved schedule takes effect at once.
        add_action('add_option_' . Settings::OPTION, [self::class, 'reschedule']);
        add_action('update_option_' . Settings::OPTION, [self::class, 'reschedule']);
    }

    /**
     * @param array<string, array{interval: int, display: string}> $schedules
     * @return array<string, array{interval: int, display: string}>
     */
    public static function schedules(array $schedules): array
    {
        $schedules[self::EVERY_FIVE_MINUTES] = [
            'interval' => 300,
            'display' => 'Every five minutes (SCIM provisioning)',
        ];
        return $schedules;
    }

    /** Schedules (or unschedules) both jobs from the saved settings. */
    public static function reschedule(): void
    {
        $settings = Plugin::instance()->settings();
        $schedule = (string) $settings->get('schedule');
        $current = wp_get_schedule(self::RECONCILE);
        if ($schedule === 'off' || !$settings->isConfigured()) {
            wp_clear_scheduled_hook(self::RECONCILE);
        } elseif ($current !== $schedule) {
            wp_clear_scheduled_hook(self::RECONCILE);
            wp_schedule_event(time() + 60, $schedule, self::RECONCILE);
        }
        if (!wp_next_scheduled(self::DRAIN)) {
            wp_schedule_event(time() + 300, self::EVERY_FIVE_MINUTES, self::DRAIN);
        }
    }

    public static function unschedule(): void
    {
        wp_clear_scheduled_hook(self::RECONCILE);
        wp_clear_scheduled_hook(self::DRAIN);
    }

    /** @internal the reconcile job */
    public function reconcile(): void
    {
        $result = $this->plugin->client()->runSync(false);
        if (!$result['ok']) {
            $message = 'scheduled sync: ' . $result['message'];
            self::quietly(fn () => $this->plugin->log()->add(0, '', 'sync', 'failed', null, $message, 0));
        }
    }

    /** @internal the drain job */
    public function drain(): void
    {
        self::quietly(function (): void {
            $this->plugin->client()->drain();
            $this->plugin->log()->prune();
        });
    }

    /** Runs a job's step; a lost database or a failure is logged, never a fatal error in wp-cron.php. */
    private static function quietly(callable $step): void
    {
        try {
            DatabaseGuard::run($step);
        } catch (\Throwable $e) {
            error_log('scim-provisioner: cron: ' . ClientService::describe($e));
        }
    }
}
