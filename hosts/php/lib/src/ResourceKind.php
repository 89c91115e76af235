<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** Which resource type a directory call is about (WIT `resource-kind`). */
enum ResourceKind: string
{
    /** `/Users` */
    case User = 'user';
    /** `/Groups` */
    case Group = 'group';
}
