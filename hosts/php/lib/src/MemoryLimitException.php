<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** The guest needed more linear memory than the runtime's `memory_limit_bytes`. */
final class MemoryLimitException extends GuestTrapException
{
}
