<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\UserEvent;

/**
 * The client role's hooks: every user change becomes an outbox row in WordPress's database
 * as it happens, and automatic mode delivers the request's rows at `shutdown`, after the
 * response has gone to the browser ({@see ResponseFinisher}).
 *
 * One save fires several hooks for the same user (wp_insert_user sets the role before
 * `user_register`; a profile save fires `profile_update` and maybe `set_user_role`): the
 * first one writes the row, later ones rewrite that same row, and at shutdown the row's
 * snapshot is taken again, so it holds the user as the whole request left them (meta saved
 * by other plugins after the hook included). The event says what happened in the request:
 * created, deleted, blocked (the last role was removed: inactive), unblocked (a role came
 * back) or updated.
 */
final class UserHooks
{
    /** @var array<int, array{row: int, event: string, had_role: bool}> users changed in this request */
    private array $touched = [];

    private function __construct(private readonly Plugin $plugin)
    {
    }

    public static function register(Plugin $plugin): void
    {
        $hooks = new self($plugin);
        add_action('user_register', [$hooks, 'onRegister'], 20, 1);
        add_action('profile_update', [$hooks, 'onProfileUpdate'], 20, 2);
        add_action('set_user_role', [$hooks, 'onSetRole'], 20, 3);
        add_action('add_user_role', [$hooks, 'onAddRole'], 20, 2);
        add_action('remove_user_role', [$hooks, 'onRemoveRole'], 20, 2);
        add_action('delete_user', [$hooks, 'onDelete'], 20, 1);
        // Before wp_ob_end_flush_all (priority 1), so the buffered response can be finished with its length.
        add_action('shutdown', [$hooks, 'onShutdown'], 0);
    }

    /** @internal */
    public function onRegister(int $userId): void
    {
        $this->touch($userId, UserEvent::Created->value, false);
    }

    /** @internal */
    public function onProfileUpdate(int $userId, mixed $oldUser = null): void
    {
        $had = $oldUser instanceof \WP_User ? $oldUser->roles !== [] : null;
        $this->touch($userId, UserEvent::Updated->value, $had);
    }

    /**
     * @internal
     * @param list<string> $oldRoles
     */
    public function onSetRole(int $userId, string $role = '', array $oldRoles = []): void
    {
        $this->touch($userId, UserEvent::Updated->value, $oldRoles !== []);
    }

    /** @internal */
    public function onAddRole(int $userId, string $role = ''): void
    {
        $user = get_userdata($userId);
        $before = $user instanceof \WP_User ? array_diff($user->roles, [$role]) : [];
        $this->touch($userId, UserEvent::Updated->value, $before !== []);
    }

    /** @internal */
    public function onRemoveRole(int $userId, string $role = ''): void
    {
        $this->touch($userId, UserEvent::Updated->value, true);
    }

    /** @internal Fires before WordPress deletes the user and their meta: the snapshot and link are read now. */
    public function onDelete(int $userId): void
    {
        if (!$this->enabled()) {
            return;
        }
        $user = get_userdata($userId);
        if (!$user instanceof \WP_User) {
            return;
        }
        try {
            $snapshot = $this->plugin->client()->fields()->snapshot($user);
            $link = Links::get($userId);
            $event = UserEvent::Deleted->value;
            $known = $this->touched[$userId] ?? null;
            if ($known !== null && $this->plugin->outbox()->rewrite($known['row'], $event, $snapshot, $link)) {
                $this->touched[$userId]['event'] = $event;
                return;
            }
            $row = $this->plugin->outbox()->enqueue($userId, $event, $snapshot, $link);
            $this->touched[$userId] = ['row' => $row, 'event' => $event, 'had_role' => $user->roles !== []];
        } catch (\Throwable $e) {
            // The user's deletion must go on; the failure is recorded for the admin.
            $this->recordFailure($userId, $e);
        }
    }

    /**
     * @internal Refreshes the request's rows, then (automatic mode) finishes the response and
     * delivers them.
     */
    public function onShutdown(): void
    {
        if ($this->touched === []) {
            return;
        }
        $outbox = $this->plugin->outbox();
        $fields = $this->plugin->client()->fields();
        foreach ($this->touched as $userId => $t) {
            if ($t['event'] === UserEvent::Deleted->value) {
                continue;
            }
            $user = get_userdata($userId);
            if (!$user instanceof \WP_User) {
                continue;
            }
            try {
                $outbox->rewrite($t['row'], self::finalEvent($t, $user), $fields->snapshot($user));
            } catch (\Throwable $e) {
                $this->recordFailure($userId, $e);
            }
        }
        $userIds = array_keys($this->touched);
        $this->touched = [];
        if (!$this->plugin->settings()->get('automatic') || $this->plugin->client()->deliveryProblem() !== null) {
            return;
        }
        ResponseFinisher::finish();
        try {
            $this->plugin->client()->drain($userIds);
        } catch (\Throwable $e) {
            // The rows stay queued; cron or the worker delivers them.
            error_log('scim-provisioner: delivery at shutdown failed: ' . ClientService::describe($e));
        }
    }

    private function touch(int $userId, string $event, ?bool $hadRole): void
    {
        if (!$this->enabled()) {
            return;
        }
        $known = $this->touched[$userId] ?? null;
        if ($known !== null) {
            // One row per user and request, refreshed at shutdown. wp_insert_user sets the
            // role (set_user_role) before user_register: the user was created all the same.
            if ($event === UserEvent::Created->value && $known['event'] !== UserEvent::Deleted->value) {
                $this->touched[$userId]['event'] = $event;
            }
            return;
        }
        $user = get_userdata($userId);
        if (!$user instanceof \WP_User) {
            return;
        }
        try {
            $snapshot = $this->plugin->client()->fields()->snapshot($user);
            $row = $this->plugin->outbox()->enqueue($userId, $event, $snapshot);
            $hadRole ??= $user->roles !== [];
            $this->touched[$userId] = ['row' => $row, 'event' => $event, 'had_role' => $hadRole];
        } catch (\Throwable $e) {
            $this->recordFailure($userId, $e);
        }
    }

    /** @param array{row: int, event: string, had_role: bool} $t */
    private static function finalEvent(array $t, \WP_User $user): string
    {
        if ($t['event'] !== UserEvent::Updated->value) {
            return $t['event'];
        }
        $has = $user->roles !== [];
        return match (true) {
            $t['had_role'] && !$has => UserEvent::Blocked->value,
            !$t['had_role'] && $has => UserEvent::Unblocked->value,
            default => UserEvent::Updated->value,
        };
    }

    private function enabled(): bool
    {
        return $this->plugin->settings()->isConfigured();
    }

    private function recordFailure(int $userId, \Throwable $e): void
    {
        try {
            $message = 'the change could not be queued: ' . ClientService::describe($e);
            $this->plugin->log()->add($userId, '', 'queue', 'failed', null, $message, 0);
        } catch (\Throwable) {
            error_log('scim-provisioner: user ' . $userId . ': the change could not be queued: ' . $e->getMessage());
        }
    }
}
