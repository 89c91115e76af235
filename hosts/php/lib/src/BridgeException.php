<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The native bridge could not be loaded or set up, or it refused a request: ext-ffi is
 * missing or disabled, the bridge library or the component is not found, the bridge
 * reported an error. Never a component error: those are {@see ProvisioningException}.
 */
class BridgeException extends \RuntimeException implements ScimProvisionerException
{
}
