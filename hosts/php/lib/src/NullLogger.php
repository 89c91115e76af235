<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** Drops every line. */
final class NullLogger implements Logger
{
    use LoggerTrait;

    /** @param array<string, mixed> $context */
    public function log(string $level, string|\Stringable $message, array $context = []): void
    {
    }
}
