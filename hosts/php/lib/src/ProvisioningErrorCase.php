<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The cases of the WIT `provisioning-error` variant, with the WIT names as values
 * ({@see ProvisioningException::errorCase()}).
 */
enum ProvisioningErrorCase: string
{
    case InvalidConfig = 'invalid-config';
    case MissingAttribute = 'missing-attribute';
    case Transport = 'transport';
    case Scim = 'scim';
    case UnexpectedResponse = 'unexpected-response';
    case Other = 'other';
}
