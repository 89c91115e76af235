<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** Why the guest trapped ({@see GuestTrapException::trapKind()}), with the bridge's names as values. */
enum TrapKind: string
{
    case Deadline = 'deadline';
    case Memory = 'memory';
    case Trap = 'trap';
}
