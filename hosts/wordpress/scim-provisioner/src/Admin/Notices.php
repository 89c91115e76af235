<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

/**
 * One-shot messages that survive the redirect after an admin-post action: kept in a transient
 * of the current user's own (so two admins never see each other's results), shown once through
 * the Settings API's settings errors, then deleted.
 */
final class Notices
{
    private const TTL = 300;

    /** @param 'success'|'error'|'warning'|'info' $type */
    public static function push(string $code, string $type, string $message): void
    {
        $notices = self::read();
        $notices[] = ['code' => $code, 'type' => $type, 'message' => $message];
        set_transient(self::key(), $notices, self::TTL);
    }

    /**
     * Hands the pending messages to the Settings API (escaped: settings_errors() prints them as
     * given) and prints them; nothing is printed when there are none.
     */
    public static function render(): void
    {
        $notices = self::read();
        delete_transient(self::key());
        foreach ($notices as $notice) {
            $message = esc_html($notice['message']);
            add_settings_error('scim_provisioner', 'scim-' . $notice['code'], $message, $notice['type']);
        }
        settings_errors('scim_provisioner');
    }

    /** A value an action hands to the next page view (a form's rejected input, a plan), once. */
    public static function stash(string $name, mixed $value): void
    {
        set_transient(self::key() . '_' . $name, $value, self::TTL);
    }

    public static function unstash(string $name): mixed
    {
        $value = get_transient(self::key() . '_' . $name);
        delete_transient(self::key() . '_' . $name);
        return $value === false ? null : $value;
    }

    /** @return list<array{code: string, type: string, message: string}> */
    private static function read(): array
    {
        $notices = get_transient(self::key());
        return is_array($notices) ? $notices : [];
    }

    private static function key(): string
    {
        return 'scim_provisioner_notices_' . get_current_user_id();
    }
}
