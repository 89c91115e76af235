<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * Hands the library's log lines to any PSR-3 logger (`Psr\Log\LoggerInterface`: Drupal's
 * logger channels, Joomla's PSR-3 bridge, Monolog). Every method that takes a logger takes
 * a PSR-3 one too and wraps it in this itself; build one by hand only to pass it where a
 * {@see Logger} is typed, such as your own code.
 *
 * psr/log is not a requirement of the library (see hosts/php/README.md): this class names
 * the interface only in type declarations, which PHP resolves lazily, so it loads, and the rest of the library runs,
 * without psr/log installed. Secrets are redacted before a line reaches the PSR-3 logger:
 * each connector and server wraps its logger in a redacting one first.
 */
final class PsrLoggerAdapter implements Logger
{
    use LoggerTrait;

    public function __construct(private readonly \Psr\Log\LoggerInterface $inner)
    {
    }

    /**
     * A {@see Logger} for what a caller passed: a Logger as it is, a PSR-3 logger wrapped,
     * null as a {@see NullLogger}.
     *
     */
    public static function wrap(Logger|\Psr\Log\LoggerInterface|null $logger): Logger
    {
        return match (true) {
            $logger === null => new NullLogger(),
            $logger instanceof Logger => $logger,
            default => new self($logger),
        };
    }

    /** The PSR-3 logger lines go to. */
    public function inner(): \Psr\Log\LoggerInterface
    {
        return $this->inner;
    }

    /** @param array<string, mixed> $context */
    public function log(string $level, string|\Stringable $message, array $context = []): void
    {
        // The levels are PSR-3's names already (Psr\Log\LogLevel's values).
        $this->inner->log($level, $message, $context);
    }
}
