<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The guest ran longer than the runtime's `deadline_ms` between two host answers (epoch
 * interruption). PHP's max_execution_time does not stop wasm; this does.
 */
final class DeadlineExceededException extends GuestTrapException
{
}
