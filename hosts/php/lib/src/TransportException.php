<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A {@see Transport} could not carry an exchange out. `case` is the WIT `transport-error`
 * case: `denied`, `invalid-url`, `cannot-connect`, `tls`, `timeout` or `other`. The guest
 * receives it as the import's error and decides (retry class, look-up before retry).
 * Never carries a header value or a credential.
 */
final class TransportException extends \RuntimeException implements ScimProvisionerException
{
    public const CASES = ['denied', 'invalid-url', 'cannot-connect', 'tls', 'timeout', 'other'];

    /** The WIT case name ({@see errorCase()} for the enum). */
    public readonly string $case;

    public function __construct(string|TransportErrorCase $case, string $message = '', ?\Throwable $previous = null)
    {
        $case = $case instanceof TransportErrorCase ? $case->value : $case;
        if (!in_array($case, self::CASES, true)) {
            throw new InvalidArgumentException("unknown transport-error case {$case}");
        }
        $this->case = $case;
        parent::__construct($message === '' ? $case : "{$case}: {$message}", 0, $previous);
        $this->detail = $message;
    }

    /** The message without the case prefix. */
    public readonly string $detail;

    /** The case as an enum. */
    public function errorCase(): TransportErrorCase
    {
        return TransportErrorCase::from($this->case);
    }

    /**
     * The WIT `transport-error` value.
     *
     * @return array{tag: string, val?: string}
     */
    public function toWit(): array
    {
        return $this->case === 'timeout' ? ['tag' => 'timeout'] : ['tag' => $this->case, 'val' => $this->detail];
    }

    /**
     * From a WIT `transport-error` value.
     *
     * @param array{tag: string, val?: string} $wit
     */
    public static function fromWit(array $wit): self
    {
        return new self((string) $wit['tag'], (string) ($wit['val'] ?? ''));
    }
}
