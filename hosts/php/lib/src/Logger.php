<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * Where the component's log lines (the WIT `logging` import) and the library's own go.
 * Shaped like PSR-3's LoggerInterface, whose loggers (Drupal's `logger.factory` channels,
 * Joomla's delegated logger, Monolog) every method that takes a logger also takes directly
 * ({@see PsrLoggerAdapter}); this interface lets the library run without psr/log, as the
 * WordPress plugin's bundle does. Levels are PSR-3's:
 * emergency, alert, critical, error, warning, notice, info, debug. The component's levels
 * map as trace/debug -> debug, info -> info, warn -> warning, error -> error.
 *
 * Nothing the library logs holds a secret: the component never logs credentials, and each
 * connector additionally redacts its token/password from every line before it gets here.
 */
interface Logger
{
    /**
     * @param array<string, mixed> $context
     */
    public function log(string $level, string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function emergency(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function alert(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function critical(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function error(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function warning(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function notice(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function info(string|\Stringable $message, array $context = []): void;

    /** @param array<string, mixed> $context */
    public function debug(string|\Stringable $message, array $context = []): void;
}
