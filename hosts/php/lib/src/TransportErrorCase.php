<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The cases of the WIT `transport-error` variant, with the WIT names as values
 * ({@see TransportException::errorCase()}).
 */
enum TransportErrorCase: string
{
    case Denied = 'denied';
    case InvalidUrl = 'invalid-url';
    case CannotConnect = 'cannot-connect';
    case Tls = 'tls';
    case Timeout = 'timeout';
    case Other = 'other';
}
