<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\Cron;

/**
 * The provisioning tab: which operations reach the server, what happens to a user who is deleted
 * or leaves the scope (no role on the site counts as inactive), the scope by role, automatic
 * delivery, the WP-Cron schedule, the deletion threshold; and "Sync now": the plan first, nothing
 * sent until the admin confirms.
 */
final class ProvisioningTab
{
    private const PAGE = 'scim-provisioner-provisioning';
    private const PLAN_ROWS_SHOWN = 200;

    public static function render(): void
    {
        $plan = Notices::unstash('sync_plan');
        if (is_array($plan)) {
            self::renderPlan($plan);
        }
        $saved = SettingsPage::plugin()->settings()->all();
        $draft = Notices::unstash('provisioning_form');
        $form = is_array($draft) ? array_merge($saved, $draft) : $saved;

        self::addFields($form);

        SettingsPage::formOpen('save_provisioning', 'scim-provisioning-form');
        do_settings_sections(self::PAGE);
        submit_button(__('Save Changes'), 'primary', 'submit', true, ['id' => 'scim-save-provisioning']);
        echo '</form>';

        echo '<hr><h2>' . esc_html__('Sync now', 'scim-provisioner') . '</h2><p>' . esc_html__(
            'Compares every user in scope with the server and shows what a full sync would do. '
            . 'Nothing is sent until you confirm.',
            'scim-provisioner'
        ) . '</p>';
        SettingsPage::formOpen('plan_sync', 'scim-plan-form');
        submit_button(__('Sync now…', 'scim-provisioner'), 'secondary', 'plan', false, ['id' => 'scim-sync-now']);
        echo '</form>';
    }

    /** The settings fields, through the Settings API. @param array<string, mixed> $form */
    private static function addFields(array $form): void
    {
        add_settings_section('operations', __('Provisioning', 'scim-provisioner'), static function (): void {
            echo '<p>' . esc_html__(
                'WordPress has no "blocked" flag: a user with no role on this site counts as inactive, '
                . 'and the deprovision action below applies to them as to a deleted user.',
                'scim-provisioner'
            ) . '</p>';
        }, self::PAGE);
        $field = static function (string $id, string $title, callable $render, string $labelFor = ''): void {
            $args = $labelFor !== '' ? ['label_for' => $labelFor] : [];
            add_settings_field($id, $title, $render, self::PAGE, 'operations', $args);
        };
        $title = __('Operations sent to the server', 'scim-provisioner');
        $field('operations', $title, static function () use ($form): void {
            $ops = (array) ($form['operations'] ?? []);
            $labels = [
                'create' => __('Create', 'scim-provisioner'),
                'update' => __('Update', 'scim-provisioner'),
                'deactivate' => __('Deactivate', 'scim-provisioner'),
                'delete' => __('Delete', 'scim-provisioner'),
            ];
            echo '<fieldset>';
            foreach ($labels as $op => $label) {
                echo Html::checkbox("operations[{$op}]", "scim-op-{$op}", !empty($ops[$op]), $label) . '<br>';
            }
            echo '</fieldset>';
        });
        $title = __('When a user is deleted or made inactive', 'scim-provisioner');
        $field('deprovision', $title, static function () use ($form): void {
            echo Html::radios('deprovision', 'scim-deprovision-', [
                'deactivate' => __('Deactivate the remote user (active: false)', 'scim-provisioner'),
                'delete' => __('Delete the remote user', 'scim-provisioner'),
                'none' => __('Do nothing on the server', 'scim-provisioner'),
            ], (string) ($form['deprovision'] ?? 'deactivate'));
        });
        $field('scope_roles', __('Scope', 'scim-provisioner'), static function () use ($form): void {
            $scope = array_map('strval', (array) ($form['scope_roles'] ?? []));
            echo '<fieldset>' . Html::description(__(
                'Provision only users with one of these roles (none ticked: every user with a role).',
                'scim-provisioner'
            ));
            foreach (wp_roles()->get_names() as $role => $name) {
                $checked = in_array($role, $scope, true);
                $label = translate_user_role($name);
                echo Html::checkbox('scope_roles[]', "scim-scope-{$role}", $checked, $label) . '<br>';
            }
            echo '</fieldset>';
        });
        $field('automatic', __('Automatic provisioning', 'scim-provisioner'), static function () use ($form): void {
            echo Html::checkbox('automatic', 'scim-automatic', !empty($form['automatic']), __(
                'Send each change to a user as it happens '
                . '(after the page has been sent, so saving a user does not wait for the server)',
                'scim-provisioner'
            ));
        });
        $field('schedule', __('Scheduled sync (WP-Cron)', 'scim-provisioner'), static function () use ($form): void {
            echo Html::select('schedule', 'scim-schedule', [
                'off' => __('Off (manual only)', 'scim-provisioner'),
                'hourly' => __('Hourly'),
                'twicedaily' => __('Twice Daily'),
                'daily' => __('Daily'),
            ], (string) ($form['schedule'] ?? 'off'));
            $next = wp_next_scheduled(Cron::RECONCILE);
            /* translators: %s: date and time */
            $nextRun = __(
                'Next run: %s. Sites that run cron from the system can call bin/worker instead.',
                'scim-provisioner'
            );
            $text = $next
                ? sprintf($nextRun, SettingsPage::time((int) $next))
                : __('Not scheduled.', 'scim-provisioner');
            echo Html::description($text, 'scim-next-run');
        }, 'scim-schedule');
        $title = __('Deletion threshold', 'scim-provisioner');
        $field('deletion_threshold', $title, static function () use ($form): void {
            $threshold = (string) ($form['deletion_threshold'] ?? '');
            echo Html::input('number', 'deletion_threshold', 'scim-threshold', $threshold, [
                'min' => '0',
                'step' => '1',
                'class' => 'small-text',
            ]);
            echo Html::description(__(
                'A sync that would deactivate or delete more users than this stops before sending anything, '
                . 'unless you allow it when you confirm.',
                'scim-provisioner'
            ));
        }, 'scim-threshold');
    }

    /** admin-post: saves the provisioning settings through Settings::save. */
    public static function save(): void
    {
        SettingsPage::authorize('save_provisioning');
        $operations = [];
        foreach (['create', 'update', 'deactivate', 'delete'] as $op) {
            $operations[$op] = !empty($_POST['operations'][$op]);
        }
        $roles = isset($_POST['scope_roles']) && is_array($_POST['scope_roles'])
            ? array_values(array_map('sanitize_key', wp_unslash($_POST['scope_roles'])))
            : [];
        $threshold = SettingsPage::postText('deletion_threshold');
        $input = [
            'operations' => $operations,
            'deprovision' => sanitize_key(SettingsPage::postText('deprovision')),
            'scope_roles' => $roles,
            'automatic' => !empty($_POST['automatic']),
            'schedule' => sanitize_key(SettingsPage::postText('schedule')),
        ];
        $errors = [];
        if (!preg_match('/^\d{1,7}$/', $threshold)) {
            $errors[] = __('The deletion threshold is a whole number of users (0 or more).', 'scim-provisioner');
        } else {
            $input['deletion_threshold'] = (int) $threshold;
        }
        if ($errors === []) {
            $errors = SettingsPage::plugin()->settings()->save($input);
        }
        if ($errors !== []) {
            SettingsPage::pushErrors('provisioning-error', $errors);
            $notSaved = __('Nothing was saved: correct the settings below.', 'scim-provisioner');
            Notices::push('provisioning-not-saved', 'error', $notSaved);
            Notices::stash('provisioning_form', array_merge($input, ['deletion_threshold' => $threshold]));
        } else {
            Notices::push('provisioning-saved', 'success', __('Settings saved.'));
        }
        SettingsPage::redirect('provisioning');
    }

    /** admin-post: asks the component for the plan (nothing is sent) and shows it with a confirmation. */
    public static function plan(): void
    {
        SettingsPage::authorize('plan_sync');
        try {
            $plan = SettingsPage::plugin()->client()->planSync();
        } catch (\Throwable $e) {
            $plan = ['ok' => false, 'actions' => [], 'counts' => [], 'message' => SettingsPage::describe($e)];
        }
        if (empty($plan['ok'])) {
            $message = __('The plan could not be made: ', 'scim-provisioner') . (string) ($plan['message'] ?? '');
            Notices::push('sync-plan', 'error', $message);
            SettingsPage::redirect('provisioning');
        }
        $actions = array_values((array) ($plan['actions'] ?? []));
        Notices::stash('sync_plan', [
            'counts' => (array) ($plan['counts'] ?? []),
            'actions' => array_slice($actions, 0, self::PLAN_ROWS_SHOWN),
            'total' => count($actions),
            'message' => (string) ($plan['message'] ?? ''),
        ]);
        SettingsPage::redirect('provisioning');
    }

    /** admin-post: the confirmed sync. */
    public static function run(): void
    {
        SettingsPage::authorize('run_sync');
        try {
            $result = SettingsPage::plugin()->client()->runSync(!empty($_POST['allow_deletes']));
        } catch (\Throwable $e) {
            $result = ['ok' => false, 'counts' => [], 'message' => SettingsPage::describe($e)];
        }
        $counts = self::countsText((array) ($result['counts'] ?? []));
        $message = trim((string) ($result['message'] ?? '') . ($counts !== '' ? ' (' . $counts . ')' : ''));
        $message = __('Sync: ', 'scim-provisioner') . $message;
        Notices::push('sync-result', !empty($result['ok']) ? 'success' : 'error', $message);
        SettingsPage::redirect('provisioning');
    }

    /**
     * The plan, and the form that confirms it.
     *
     * @param array{counts: array<string, int>, actions: list<array<string, mixed>>, total: int, message: string} $plan
     */
    private static function renderPlan(array $plan): void
    {
        echo '<div class="card" id="scim-plan" style="max-width:none">';
        echo '<h2>' . esc_html__('Plan: nothing has been sent yet', 'scim-provisioner') . '</h2>';
        $counts = self::countsText($plan['counts']);
        $counts = $counts !== '' ? $counts : __('Every user is up to date.', 'scim-provisioner');
        echo '<p id="scim-plan-counts">' . esc_html($counts) . '</p>';
        if ($plan['message'] !== '') {
            echo '<p id="scim-plan-message">' . esc_html($plan['message']) . '</p>';
        }
        if ($plan['actions'] !== []) {
            $headers = [
                __('Action', 'scim-provisioner'),
                __('User', 'scim-provisioner'),
                __('Reason', 'scim-provisioner'),
            ];
            echo Html::tableHead('scim-plan-rows', $headers);
            foreach ($plan['actions'] as $action) {
                $login = (string) ($action['user_login'] ?? '');
                printf(
                    '<tr data-user="%s"><td class="scim-plan-action">%s</td><td>%s</td><td>%s</td></tr>',
                    esc_attr($login),
                    esc_html((string) ($action['action'] ?? '')),
                    esc_html($login !== '' ? $login : '#' . (int) ($action['user_id'] ?? 0)),
                    esc_html((string) ($action['reason'] ?? ''))
                );
            }
            echo '</tbody></table>';
            $more = $plan['total'] - count($plan['actions']);
            if ($more > 0) {
                /* translators: %d: how many planned actions are not listed */
                echo '<p>' . esc_html(sprintf(__('… and %d more.', 'scim-provisioner'), $more)) . '</p>';
            }
        }
        SettingsPage::formOpen('run_sync', 'scim-confirm-form');
        $allow = __('Allow more deactivations and deletions than the threshold', 'scim-provisioner');
        echo '<p>' . Html::checkbox('allow_deletes', 'scim-allow-deletes', false, $allow) . '</p><p>';
        $confirm = __('Confirm: sync now', 'scim-provisioner');
        submit_button($confirm, 'primary', 'confirm', false, ['id' => 'scim-confirm-sync']);
        $cancel = esc_url(SettingsPage::url('provisioning'));
        echo ' <a class="button" id="scim-cancel-sync" href="' . $cancel . '">' . esc_html__('Cancel') . '</a></p>';
        echo '</form>';
        SyncProgressView::render('scim-confirm-form');
        echo '</div>';
    }

    /** @param array<string, int|string> $counts */
    private static function countsText(array $counts): string
    {
        $parts = [];
        foreach ($counts as $name => $count) {
            $parts[] = $name . ': ' . (int) $count;
        }
        return implode(', ', $parts);
    }
}
