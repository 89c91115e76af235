<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A value the library refused: a CMS field of a type the WIT cannot carry, an unknown
 * event or log level, a malformed option. Extends PHP's, so `catch (\InvalidArgumentException)`
 * keeps working.
 */
class InvalidArgumentException extends \InvalidArgumentException implements ScimProvisionerException
{
}
