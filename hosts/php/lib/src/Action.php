<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What a provisioning call did (WIT `action`). */
enum Action: string
{
    case Created = 'created';
    /** An existing remote user was found by the matching attributes and linked. */
    case Adopted = 'adopted';
    case Updated = 'updated';
    /** Nothing had changed, so nothing was sent. */
    case Unchanged = 'unchanged';
    case Deactivated = 'deactivated';
    case Deleted = 'deleted';
    /** The link was dropped without a change on the server. */
    case Unlinked = 'unlinked';
    case Skipped = 'skipped';
}
