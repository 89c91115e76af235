<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * WordPress lost its database while the plugin was working. What was sent before stays
 * recorded; what was not is still queued (or will be found changed by the next sync).
 */
final class DatabaseUnavailableException extends \RuntimeException
{
}
