<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\UserFields;

/**
 * The attribute-mapping tab: one row per rule of the component's mapping (docs/configuration.md):
 * the SCIM attribute it fills, and a WordPress field, a user-meta key, a constant or a template.
 * "Preview" maps a chosen user with the rules as they stand in the form, saved or not.
 */
final class MappingTab
{
    /** The WordPress user fields offered first; any user-meta key is accepted too. */
    public const FIELDS = [...UserFields::CORE, '@id', '@active'];
    private const KINDS = ['source' => 'field or meta key', 'constant' => 'constant', 'template' => 'template'];
    /** WordPress's own per-user preferences: not worth offering as sources. */
    private const WORDPRESS_META = [
        'session_tokens', 'rich_editing', 'syntax_highlighting', 'comment_shortcuts', 'admin_color', 'use_ssl',
        'show_admin_bar_front', 'locale', 'dismissed_wp_pointers', 'show_welcome_panel',
    ];

    public static function render(): void
    {
        $draft = Notices::unstash('mapping_form');
        $preview = Notices::unstash('mapping_preview');
        if (is_array($draft)) {
            $rows = $draft['rows'];
            $rowErrors = $draft['errors'];
            $previewUser = (int) $draft['user'];
        } else {
            $rows = array_map([self::class, 'ruleToRow'], self::savedRules());
            $rowErrors = [];
            $previewUser = 0;
        }
        if (is_array($preview)) {
            $flags = JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
            $json = (string) wp_json_encode($preview['payload'], $flags);
            /* translators: %s: a user login */
            $title = sprintf(__('%s maps to', 'scim-provisioner'), $preview['user']);
            echo '<div class="card" id="scim-preview" style="max-width:none"><h2>' . esc_html($title) . '</h2>';
            echo '<pre id="scim-preview-json">' . esc_html($json) . '</pre></div>';
        }
        echo '<p>' . esc_html__(
            'Each rule fills one SCIM attribute. A source is a WordPress user field (user_login, user_email, '
            . 'first_name, last_name, display_name, nickname, roles…) or any user-meta key; has_role is true while '
            . 'the user has a role on this site, @id is the user ID and @active is the same as a boolean status. '
            . 'Transforms are written a | b (lower, trim, split:, join:…). The reference is docs/configuration.md.',
            'scim-provisioner'
        ) . '</p>';

        SettingsPage::formOpen('save_mapping', 'scim-mapping-form');
        $headers = [
            '#',
            __('SCIM attribute', 'scim-provisioner'),
            __('Kind', 'scim-provisioner'),
            __('Field, meta key, constant or template', 'scim-provisioner'),
            __('Transforms', 'scim-provisioner'),
            __('Only on create', 'scim-provisioner'),
            __('Required', 'scim-provisioner'),
            __('Remove', 'scim-provisioner'),
        ];
        echo Html::tableHead('scim-rules', $headers);
        $rows[] = ['target' => '', 'kind' => 'source', 'value' => '', 'transform' => '', 'new' => true];
        foreach (array_values($rows) as $i => $row) {
            echo self::ruleRow($i, $row, isset($rowErrors[$i]) ? (string) $rowErrors[$i] : null);
        }
        echo '</tbody></table><datalist id="scim-fields">';
        foreach (array_merge(self::FIELDS, self::metaKeys()) as $field) {
            printf('<option value="%s">', esc_attr($field));
        }
        echo '</datalist>';
        echo '<h2>' . esc_html__('Preview', 'scim-provisioner') . '</h2><p><label for="scim-preview-user">'
            . esc_html__('Map this user with the rules above (nothing is saved or sent):', 'scim-provisioner')
            . '</label> ';
        wp_dropdown_users([
            'name' => 'preview_user',
            'id' => 'scim-preview-user',
            'selected' => $previewUser,
            'show' => 'user_login',
        ]);
        echo ' ';
        $previewLabel = __('Preview', 'scim-provisioner');
        submit_button($previewLabel, 'secondary', 'preview', false, ['id' => 'scim-preview-button']);
        echo '</p><p class="submit">';
        submit_button(__('Save mapping', 'scim-provisioner'), 'primary', 'save', false, ['id' => 'scim-save-mapping']);
        echo '</p></form>';
    }

    /**
     * One rule's row of the form; the last row (new) adds a rule.
     *
     * @param array<string, mixed> $row
     */
    private static function ruleRow(int $i, array $row, ?string $error): string
    {
        $new = !empty($row['new']);
        $name = static fn (string $field): string => "rules[{$i}][{$field}]";
        $html = sprintf('<tr id="scim-rule-%d"%s>', $i, $error !== null ? ' class="scim-invalid"' : '');
        $number = $new
            ? esc_html__('new', 'scim-provisioner') . Html::input('hidden', $name('new'), '', '1')
            : (string) $i;
        $html .= '<td>' . $number . '</td>';
        $html .= '<td>' . Html::input('text', $name('target'), '', (string) $row['target'], [
            'placeholder' => $new ? __('add a rule, e.g. title', 'scim-provisioner') : '',
        ]);
        if ($error !== null) {
            $html .= sprintf(
                '<p class="description scim-rule-error" id="scim-rule-error-%d" style="color:#b32d2e">%s</p>',
                $i,
                esc_html($error)
            );
        }
        $html .= '</td><td>' . Html::select($name('kind'), '', self::KINDS, (string) $row['kind']) . '</td>';
        $value = Html::input('text', $name('value'), '', (string) $row['value'], ['list' => 'scim-fields']);
        $transform = Html::input('text', $name('transform'), '', (string) $row['transform'], ['size' => '12']);
        $html .= '<td>' . $value . '</td><td>' . $transform . '</td>';
        foreach (['create_only', 'required'] as $flag) {
            $checked = checked(!empty($row[$flag]), true, false);
            $box = sprintf('<input type="checkbox" name="%s" value="1"%s>', esc_attr($name($flag)), $checked);
            $html .= '<td>' . $box . '</td>';
        }
        $remove = sprintf(
            '<input type="checkbox" name="%s" value="1" title="%s">',
            esc_attr($name('remove')),
            esc_attr__('remove this rule', 'scim-provisioner')
        );
        return $html . '<td>' . ($new ? '' : $remove) . '</td></tr>';
    }

    /** admin-post: reads the rows; "Preview" maps the chosen user with them, "Save mapping" stores them. */
    public static function save(): void
    {
        SettingsPage::authorize('save_mapping');
        [$rows, $rules, $rowErrors] = self::postedRules();
        $userId = isset($_POST['preview_user']) ? absint($_POST['preview_user']) : 0;
        if ($rowErrors === [] && isset($_POST['preview'])) {
            self::preview($userId, $rules);
        } elseif ($rowErrors === []) {
            $rowErrors = self::store($rules);
            if ($rowErrors === null) {
                SettingsPage::redirect('mapping');
            }
        } else {
            $message = __('Nothing was saved: correct the rules marked below.', 'scim-provisioner');
            Notices::push('mapping-invalid', 'error', $message);
        }
        // The form comes back as the admin left it, with the preview or the errors.
        Notices::stash('mapping_form', ['rows' => $rows, 'errors' => $rowErrors, 'user' => $userId]);
        SettingsPage::redirect('mapping');
    }

    /**
     * The form's rows, the rules they make, and what is wrong with a row (by position).
     *
     * @return array{list<array<string, mixed>>, list<array<string, mixed>>, array<int, string>}
     */
    private static function postedRules(): array
    {
        $rows = [];
        $rules = [];
        $rowErrors = [];
        $posted = isset($_POST['rules']) && is_array($_POST['rules']) ? wp_unslash($_POST['rules']) : [];
        $blank = ['target' => '', 'kind' => 'source', 'value' => '', 'transform' => ''];
        foreach ($posted as $row) {
            if (!is_array($row)) {
                continue;
            }
            $row = array_map(static fn ($v) => is_scalar($v) ? (string) $v : '', array_merge($blank, $row));
            $emptyNewRow = !empty($row['new']) && trim($row['target']) === '' && trim($row['value']) === '';
            if (!empty($row['remove']) || $emptyNewRow) {
                continue; // removed, or the empty "add a rule" row
            }
            unset($row['new'], $row['remove']);
            $row['create_only'] = !empty($row['create_only']);
            $row['required'] = !empty($row['required']);
            $rule = self::rowToRule($row, $error);
            if ($error !== null) {
                $rowErrors[count($rows)] = $error;
            }
            $rows[] = $row;
            $rules[] = $rule;
        }
        return [$rows, $rules, $rowErrors];
    }

    /** @param list<array<string, mixed>> $rules */
    private static function preview(int $userId, array $rules): void
    {
        try {
            $result = SettingsPage::plugin()->client()->previewMapping($userId, self::json($rules));
        } catch (\Throwable $e) {
            $result = ['ok' => false, 'message' => SettingsPage::describe($e)];
        }
        $user = get_userdata($userId);
        if (!empty($result['ok'])) {
            $login = $user ? $user->user_login : (string) $userId;
            Notices::stash('mapping_preview', ['user' => $login, 'payload' => $result['payload'] ?? null]);
        } else {
            $message = __('Preview failed: ', 'scim-provisioner') . (string) ($result['message'] ?? '');
            Notices::push('mapping-preview', 'error', $message);
        }
    }

    /**
     * Saves the rules through Settings::save (the component checks them).
     *
     * @param list<array<string, mixed>> $rules
     * @return array<int, string>|null null when saved; else the problems by row
     */
    private static function store(array $rules): ?array
    {
        $errors = SettingsPage::plugin()->settings()->save(['mapping' => self::json($rules)]);
        if ($errors === []) {
            /* translators: %d: the number of rules */
            $saved = _n(
                'The attribute mapping was saved (%d rule).',
                'The attribute mapping was saved (%d rules).',
                count($rules),
                'scim-provisioner'
            );
            Notices::push('mapping-saved', 'success', sprintf($saved, count($rules)));
            return null;
        }
        $rowErrors = [];
        // The component names each rule it rejects by index: the message goes on that row.
        $perRule = '/mapping\[(\d+)\] \(target "[^"]*"\): (.*?)(?=; mapping\[\d+\]|$)/s';
        foreach (array_values($errors) as $i => $error) {
            if (preg_match_all($perRule, (string) $error, $m, PREG_SET_ORDER)) {
                foreach ($m as [, $index, $problem]) {
                    $rowErrors[(int) $index] = trim(($rowErrors[(int) $index] ?? '') . ' ' . $problem);
                }
            } else {
                SettingsPage::pushErrors('mapping-error-' . $i, [(string) $error]);
            }
        }
        $message = __('Nothing was saved: the saved mapping is unchanged.', 'scim-provisioner');
        Notices::push('mapping-invalid', 'error', $message);
        return $rowErrors;
    }

    /** @param list<array<string, mixed>> $rules */
    private static function json(array $rules): string
    {
        return (string) wp_json_encode($rules, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }

    /** @return list<array<string, mixed>> the rules in force: the saved ones, or the default mapping */
    private static function savedRules(): array
    {
        return array_values(array_filter(SettingsPage::plugin()->settings()->mappingRules(), 'is_array'));
    }

    /** Non-private user-meta keys in use on the site, for the field suggestions. @return list<string> */
    private static function metaKeys(): array
    {
        global $wpdb;
        $keys = $wpdb->get_col($wpdb->prepare(
            "SELECT DISTINCT meta_key FROM {$wpdb->usermeta}"
                . ' WHERE meta_key NOT LIKE %s AND meta_key NOT LIKE %s ORDER BY meta_key LIMIT 100',
            $wpdb->esc_like('_') . '%',
            $wpdb->esc_like($wpdb->get_blog_prefix()) . '%'
        ));
        return array_values(array_diff(array_map('strval', (array) $keys), self::FIELDS, self::WORDPRESS_META));
    }

    /** A rule as the form shows it. @param array<string, mixed> $rule @return array<string, mixed> */
    public static function ruleToRow(array $rule): array
    {
        $kind = array_key_exists('constant', $rule) ? 'constant' : (isset($rule['template']) ? 'template' : 'source');
        $value = $rule[$kind] ?? '';
        $transforms = [];
        foreach ((array) ($rule['transform'] ?? []) as $t) {
            if (is_string($t)) {
                $transforms[] = $t;
            } elseif (isset($t['split'])) {
                $transforms[] = 'split:' . $t['split'];
            } elseif (isset($t['join'])) {
                $transforms[] = 'join:' . $t['join'];
            } elseif (isset($t['regex_replace'])) {
                $regex = $t['regex_replace'];
                $transforms[] = 'regex_replace:' . $regex['pattern'] . '=>' . $regex['replacement'];
            }
        }
        return [
            'target' => (string) ($rule['target'] ?? ''),
            'kind' => $kind,
            'value' => match (true) {
                is_array($value) => implode(',', $value),
                is_bool($value) => $value ? 'true' : 'false',
                default => (string) $value,
            },
            'transform' => implode(' | ', $transforms),
            'create_only' => ($rule['apply'] ?? 'always') === 'create',
            'required' => (bool) ($rule['required'] ?? false),
        ];
    }

    /** The form's row as a rule; $error says what is missing. @param array<string, mixed> $row @return array<string, mixed> */
    public static function rowToRule(array $row, ?string &$error): array
    {
        $error = null;
        $rule = ['target' => trim((string) $row['target'])];
        $value = (string) $row['value'];
        $kind = array_key_exists((string) ($row['kind'] ?? ''), self::KINDS) ? (string) $row['kind'] : 'source';
        if ($rule['target'] === '') {
            $error = __('Enter the SCIM attribute this rule fills, e.g. title or name.givenName.', 'scim-provisioner');
        } elseif (trim($value) === '' && $kind !== 'constant') {
            $error = $kind === 'source'
                ? __(
                    'Enter the WordPress field or user-meta key to read, e.g. user_email, or @id / @active.',
                    'scim-provisioner'
                )
                : __('Enter the template, e.g. {first_name} {last_name}.', 'scim-provisioner');
        }
        if ($kind === 'constant') {
            $rule['constant'] = match (strtolower($value)) {
                'true' => true,
                'false' => false,
                default => is_numeric($value) ? $value + 0 : $value,
            };
        } else {
            $rule[$kind] = trim($value);
        }
        $transforms = [];
        foreach (array_filter(array_map('trim', explode('|', (string) $row['transform'])), 'strlen') as $t) {
            if (str_starts_with($t, 'split:')) {
                $transforms[] = ['split' => substr($t, 6)];
            } elseif (str_starts_with($t, 'join:')) {
                $transforms[] = ['join' => substr($t, 5)];
            } elseif (str_starts_with($t, 'regex_replace:') && str_contains($t, '=>')) {
                [$pattern, $replacement] = explode('=>', substr($t, 14), 2);
                $transforms[] = ['regex_replace' => ['pattern' => $pattern, 'replacement' => $replacement]];
            } else {
                $transforms[] = $t;
            }
        }
        if ($transforms !== []) {
            $rule['transform'] = $transforms;
        }
        if (!empty($row['create_only'])) {
            $rule['apply'] = 'create';
        }
        if (!empty($row['required'])) {
            $rule['required'] = true;
        }
        return $rule;
    }
}
