<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/** The form controls the tabs repeat, escaped once here. Each returns HTML; nothing prints. */
final class Html
{
    /** @param array<string, string> $attributes more attributes (an empty name or id is left out), escaped here */
    public static function input(string $type, string $name, string $id, string $value, array $attributes = []): string
    {
        return sprintf(
            '<input type="%s" value="%s"%s>',
            esc_attr($type),
            esc_attr($value),
            self::attributes(['name' => $name, 'id' => $id] + $attributes)
        );
    }

    public static function checkbox(string $name, string $id, bool $checked, string $label): string
    {
        return sprintf(
            '<label><input type="checkbox" name="%s" id="%s" value="1"%s> %s</label>',
            esc_attr($name),
            esc_attr($id),
            checked($checked, true, false),
            esc_html($label)
        );
    }

    /** @param array<string, string> $choices value => label */
    public static function radios(string $name, string $idPrefix, array $choices, string $current): string
    {
        $html = '<fieldset>';
        foreach ($choices as $value => $label) {
            $html .= sprintf(
                '<label><input type="radio" name="%s" id="%s" value="%s"%s> %s</label><br>',
                esc_attr($name),
                esc_attr($idPrefix . $value),
                esc_attr((string) $value),
                checked($current, (string) $value, false),
                esc_html($label)
            );
        }
        return $html . '</fieldset>';
    }

    /** @param array<string, string> $choices value => label */
    public static function select(string $name, string $id, array $choices, string $current): string
    {
        $html = sprintf('<select name="%s"%s>', esc_attr($name), self::attributes(['id' => $id]));
        foreach ($choices as $value => $label) {
            $html .= sprintf(
                '<option value="%s"%s>%s</option>',
                esc_attr((string) $value),
                selected($current, (string) $value, false),
                esc_html($label)
            );
        }
        return $html . '</select>';
    }

    public static function description(string $text, string $id = ''): string
    {
        return sprintf('<p class="description"%s>%s</p>', self::attributes(['id' => $id]), esc_html($text));
    }

    /** @param array<string, string> $attributes name => value; empty values are left out */
    private static function attributes(array $attributes): string
    {
        $html = '';
        foreach ($attributes as $attribute => $value) {
            if ($value !== '') {
                $html .= sprintf(' %s="%s"', esc_attr($attribute), esc_attr($value));
            }
        }
        return $html;
    }

    /**
     * A table of text cells (escaped here).
     *
     * @param list<string> $headers
     * @param list<array{cells: list<string>, user?: string}> $rows
     */
    public static function table(string $id, array $headers, array $rows): string
    {
        $html = self::tableHead($id, $headers);
        foreach ($rows as $row) {
            $html .= isset($row['user']) ? '<tr data-user="' . esc_attr($row['user']) . '">' : '<tr>';
            foreach ($row['cells'] as $cell) {
                $html .= '<td>' . esc_html($cell) . '</td>';
            }
            $html .= '</tr>';
        }
        return $html . '</tbody></table>';
    }

    /**
     * A table's opening, its header row (escaped here) and `<tbody>`; the caller writes the
     * rows (which may hold markup) and closes it with `</tbody></table>`.
     *
     * @param list<string> $headers
     */
    public static function tableHead(string $id, array $headers): string
    {
        $html = sprintf('<table class="widefat striped" id="%s"><thead><tr>', esc_attr($id));
        foreach ($headers as $header) {
            $html .= '<th>' . esc_html($header) . '</th>';
        }
        return $html . '</tr></thead><tbody>';
    }
}
