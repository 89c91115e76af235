<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\Logger;
use ScimProvisioner\LoggerTrait;

/**
 * @internal Replaces the given secrets (a token, a password, their Basic/Bearer forms)
 * with `<redacted>` in every message and context value, then forwards. Context values are
 * scrubbed all the way down: strings, Stringable objects (made strings), arrays, and
 * Throwables, which become `Class: message` strings, so no secret reaches a sink through an
 * exception's message or the arguments in its trace.
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
        $this->inner->log($level, $this->scrub((string) $message), $this->scrubValue($context));
    }

    public function scrub(string $text): string
    {
        return str_replace($this->secrets, '<redacted>', $text);
    }

    private function scrubValue(mixed $value, int $depth = 0): mixed
    {
        return match (true) {
            is_string($value) => $this->scrub($value),
            $value instanceof \Throwable => $this->scrub($value::class . ': ' . $value->getMessage()),
            $value instanceof \Stringable => $this->scrub((string) $value),
            is_array($value) && $depth < 8 => array_map(
                fn (mixed $v): mixed => $this->scrubValue($v, $depth + 1),
                $value,
            ),
            is_array($value) => '<array>',
            is_object($value) => $value::class,
            default => $value,
        };
    }
}
