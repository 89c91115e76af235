<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A use the library refuses by design, such as serializing an object that holds a native
 * handle. Extends PHP's, so `catch (\LogicException)` keeps working.
 */
class LogicException extends \LogicException implements ScimProvisionerException
{
}
