<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\Logger;
use ScimProvisioner\LoggerTrait;

/**
 * @internal Replaces the given secrets (a token, a password, their Basic/Bearer forms)
 * with `<redacted>` in every message and string context value, then forwards.
 */
final class RedactingLogger implements Logger
{
    use LoggerTrait;

    /** @var list<string> */
    private array $secrets;

    /**
     * @param list<string> $secrets
     */
    public function __construct(private readonly Logger $inner, array $secrets)
    {
        $this->secrets = array_values(array_filter($secrets, static fn (string $s): bool => strlen($s) >= 4));
    }

    /** @param array<string, mixed> $context */
    public function log(string $level, string|\Stringable $message, array $context = []): void
    {
        if ($this->secrets === []) {
            $this->inner->log($level, $message, $context);
            return;
        }
        foreach ($context as $k => $v) {
            if (is_string($v)) {
                $context[$k] = $this->scrub($v);
            }
        }
        $this->inner->log($level, $this->scrub((string) $message), $context);
    }

    public function scrub(string $text): string
    {
        return str_replace($this->secrets, '<redacted>', $text);
    }
}
