<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests\Support;

/**
 * A PSR-3 logger (psr/log's AbstractLogger, as a site's own would be) that keeps every line
 * with its context, so tests can read what reached a PSR-3 sink.
 */
final class CollectingPsrLogger extends \Psr\Log\AbstractLogger
{
    /** @var list<array{level: string, message: string, context: array<string, mixed>}> */
    public array $lines = [];

    /**
     * Untyped parameters and a void return fit psr/log 1.x (Debian 12) and 3.x alike.
     *
     * @param mixed $level
     * @param string|\Stringable $message
     * @param array<string, mixed> $context
     */
    public function log($level, $message, array $context = []): void
    {
        $this->lines[] = ['level' => (string) $level, 'message' => (string) $message, 'context' => $context];
    }

    /** Every message and context value as one text, to search for what must not be there. */
    public function text(): string
    {
        return implode("\n", array_map(
            static fn (array $l): string => "{$l['level']}: {$l['message']} " . var_export($l['context'], true),
            $this->lines,
        ));
    }
}
