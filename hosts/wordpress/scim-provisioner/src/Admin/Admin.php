<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress\Admin;

use ScimProvisioner\WordPress\Plugin;

/** The entry point Plugin::boot() calls when is_admin(): the admin screens' hooks. */
final class Admin
{
    public static function register(Plugin $plugin): void
    {
        AdminHooks::register();
    }
}
