<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * {@see PdoConnection} could not open a connection: the database refused it or could not be
 * reached, or TLS failed (a certificate refused, a session that is not encrypted). The
 * message says why and holds neither the password nor the DSN.
 */
final class DatabaseConnectionException extends \RuntimeException implements ScimProvisionerException
{
}
