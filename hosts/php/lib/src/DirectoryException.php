<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A {@see Directory} could not do what was asked. `case` is the WIT `directory-error` case:
 * `not-found` (404), `conflict` (409 uniqueness), `version-mismatch` (412),
 * `invalid-filter` (400), `unavailable` (503) or `other` (500).
 */
final class DirectoryException extends \RuntimeException implements ScimProvisionerException
{
    public const CASES = ['not-found', 'conflict', 'version-mismatch', 'invalid-filter', 'unavailable', 'other'];

    public readonly string $detail;

    /** The WIT case name ({@see errorCase()} for the enum). */
    public readonly string $case;

    public function __construct(string|DirectoryErrorCase $case, string $message = '', ?\Throwable $previous = null)
    {
        $case = $case instanceof DirectoryErrorCase ? $case->value : $case;
        if (!in_array($case, self::CASES, true)) {
            throw new InvalidArgumentException("unknown directory-error case {$case}");
        }
        $this->case = $case;
        parent::__construct($message === '' ? $case : "{$case}: {$message}", 0, $previous);
        $this->detail = $message;
    }

    /** The case as an enum. */
    public function errorCase(): DirectoryErrorCase
    {
        return DirectoryErrorCase::from($this->case);
    }

    public static function notFound(): self
    {
        return new self('not-found');
    }

    public static function conflict(string $what): self
    {
        return new self('conflict', $what);
    }

    public static function versionMismatch(): self
    {
        return new self('version-mismatch');
    }

    /**
     * The WIT `directory-error` value.
     *
     * @return array{tag: string, val?: string}
     */
    public function toWit(): array
    {
        return match ($this->case) {
            'not-found', 'version-mismatch' => ['tag' => $this->case],
            default => ['tag' => $this->case, 'val' => $this->detail],
        };
    }
}
