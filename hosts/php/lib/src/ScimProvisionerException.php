<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The marker every exception the library throws implements, so a site can catch them as
 * one: `catch (ScimProvisionerException $e)`. The concrete classes stay what they were
 * (`ProvisioningException`, `TransportException`, `DirectoryException`,
 * `GuestTrapException` and its subclasses, `BridgeException`, and the library's own
 * `InvalidArgumentException` and `LogicException`, which extend PHP's).
 *
 * What code a site passes in throws (its PDO handle, its Directory, its logger) is its
 * own and passes through unchanged, except where the WIT turns it into an error value.
 */
interface ScimProvisionerException extends \Throwable
{
}
