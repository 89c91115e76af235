<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The cases of the WIT `directory-error` variant, with the WIT names as values
 * ({@see DirectoryException::errorCase()}), and the HTTP status the component answers
 * each with.
 */
enum DirectoryErrorCase: string
{
    case NotFound = 'not-found';
    case Conflict = 'conflict';
    case VersionMismatch = 'version-mismatch';
    case InvalidFilter = 'invalid-filter';
    case Unavailable = 'unavailable';
    case Other = 'other';

    /** The status the SCIM server answers with. */
    public function httpStatus(): int
    {
        return match ($this) {
            self::NotFound => 404,
            self::Conflict => 409,
            self::VersionMismatch => 412,
            self::InvalidFilter => 400,
            self::Unavailable => 503,
            self::Other => 500,
        };
    }
}
