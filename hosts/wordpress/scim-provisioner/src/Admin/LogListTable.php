<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\LogRepository;

// phpcs:disable PSR1.Methods.CamelCapsMethodName.NotCamelCaps -- WP_List_Table's method names are WordPress's

/** The provisioning log as a WP_List_Table (LogTab loads WordPress's class first): newest first, paged, "All | Failures", Retry per failure. */
final class LogListTable extends \WP_List_Table
{
    private const PER_PAGE = 20;

    public function __construct(private readonly LogRepository $log, private readonly bool $failuresOnly)
    {
        parent::__construct([
            'singular' => 'entry',
            'plural' => 'entries',
            'ajax' => false,
            'screen' => 'settings_page_' . SettingsPage::SLUG,
        ]);
    }

    /** @return array<string, string> */
    public function get_columns(): array
    {
        return [
            'at' => __('When', 'scim-provisioner'),
            'user' => __('User', 'scim-provisioner'),
            'operation' => __('Operation', 'scim-provisioner'),
            'outcome' => __('Outcome', 'scim-provisioner'),
            'status' => __('HTTP status', 'scim-provisioner'),
            'message' => __('Message', 'scim-provisioner'),
        ];
    }

    public function prepare_items(): void
    {
        $page = $this->get_pagenum();
        $total = $this->log->count($this->failuresOnly);
        $this->items = $this->log->page(($page - 1) * self::PER_PAGE, self::PER_PAGE, $this->failuresOnly);
        $this->_column_headers = [$this->get_columns(), [], []];
        $this->set_pagination_args(['total_items' => $total, 'per_page' => self::PER_PAGE]);
    }

    /** @return array<string, string> */
    protected function get_views(): array
    {
        $views = [];
        $choices = [
            'all' => [__('All', 'scim-provisioner'), false],
            'failures' => [__('Failures', 'scim-provisioner'), true],
        ];
        foreach ($choices as $id => [$label, $failures]) {
            $url = SettingsPage::url('log', $failures ? ['failures' => 1] : []);
            $views[$id] = sprintf(
                '<a href="%s" id="scim-log-%s"%s>%s <span class="count">(%d)</span></a>',
                esc_url($url),
                esc_attr($id),
                $failures === $this->failuresOnly ? ' class="current" aria-current="page"' : '',
                esc_html($label),
                $this->log->count($failures)
            );
        }
        return $views;
    }

    public function no_items(): void
    {
        echo esc_html($this->failuresOnly
            ? __('No failures.', 'scim-provisioner')
            : __('Nothing has been provisioned yet.', 'scim-provisioner'));
    }

    /** @param array<string, mixed> $item */
    public function single_row($item): void
    {
        printf(
            '<tr data-log-id="%d" data-user="%s" class="scim-outcome-%s">',
            (int) $item['id'],
            esc_attr((string) $item['user_login']),
            esc_attr(sanitize_html_class((string) $item['outcome']))
        );
        $this->single_row_columns($item);
        echo '</tr>';
    }

    /** @param array<string, mixed> $item */
    protected function column_default($item, $column_name): string
    {
        return match ($column_name) {
            'at' => esc_html(SettingsPage::time((int) $item['at'])),
            'operation' => esc_html((string) $item['operation']),
            'outcome' => '<span class="scim-outcome">' . esc_html((string) $item['outcome']) . '</span>',
            'status' => '<span class="scim-status">' . esc_html((string) ($item['status'] ?? '—')) . '</span>',
            'message' => '<span class="scim-message">' . esc_html((string) ($item['message'] ?? '')) . '</span>',
            default => '',
        };
    }

    /** The user, with Retry under a failure the admin can send again. @param array<string, mixed> $item */
    protected function column_user($item): string
    {
        $userId = (int) $item['user_id'];
        $name = (string) $item['user_login'] !== '' ? esc_html((string) $item['user_login']) : '#' . $userId;
        $link = get_userdata($userId) ? get_edit_user_link($userId) : '';
        $out = $link !== '' ? '<a href="' . esc_url($link) . '">' . $name . '</a>' : $name;
        if (!empty($item['retryable'])) {
            $query = ['action' => 'scim_provisioner_retry', 'log_id' => (int) $item['id']];
            $url = wp_nonce_url(add_query_arg($query, admin_url('admin-post.php')), 'scim_provisioner_retry');
            $out .= $this->row_actions(['retry' => sprintf(
                '<a class="scim-retry" href="%s" title="%s">%s</a>',
                esc_url($url),
                esc_attr__('Sends the user as WordPress holds them now', 'scim-provisioner'),
                esc_html__('Retry', 'scim-provisioner')
            )], true);
        }
        return $out;
    }
}
