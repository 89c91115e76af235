<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What a provisioning call would do (WIT `planned-action`). */
enum PlannedAction: string
{
    case Create = 'create';
    case Update = 'update';
    case Deactivate = 'deactivate';
    case Reactivate = 'reactivate';
    case Delete = 'delete';
    case Skip = 'skip';
}
