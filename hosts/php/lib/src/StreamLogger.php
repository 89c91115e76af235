<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * Writes lines at or above a minimum level to a stream (STDERR by default) or a file:
 * `2026-11-30T14:00:00Z warning: message {"key":"value"}`. `{key}` placeholders in the
 * message are replaced from the context, as PSR-3 describes.
 */
final class StreamLogger implements Logger
{
    use LoggerTrait;

    public const LEVELS = [
        'debug' => 0, 'info' => 1, 'notice' => 2, 'warning' => 3,
        'error' => 4, 'critical' => 5, 'alert' => 6, 'emergency' => 7,
    ];

    /** @var resource */
    private $stream;
    private readonly int $min;

    /**
     * @param resource|string|null $target a stream, a file path (appended to), or null for STDERR
     * @param string $minLevel the lowest level written
     */
    public function __construct(mixed $target = null, string $minLevel = 'info')
    {
        if (!isset(self::LEVELS[$minLevel])) {
            throw new InvalidArgumentException(
                "unknown log level {$minLevel}; use one of " . implode(', ', array_keys(self::LEVELS))
            );
        }
        $this->min = self::LEVELS[$minLevel];
        if ($target === null) {
            $target = defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
        } elseif (is_string($target)) {
            $opened = @fopen($target, 'ab');
            if ($opened === false) {
                throw new InvalidArgumentException("cannot open the log file {$target} for appending");
            }
            $target = $opened;
        }
        if (!is_resource($target)) {
            throw new InvalidArgumentException('the log target must be a stream, a file path or null');
        }
        $this->stream = $target;
    }

    /** @param array<string, mixed> $context */
    public function log(string $level, string|\Stringable $message, array $context = []): void
    {
        $rank = self::LEVELS[$level] ?? self::LEVELS['info'];
        if ($rank < $this->min) {
            return;
        }
        $text = (string) $message;
        $rest = [];
        foreach ($context as $key => $value) {
            $placeholder = '{' . $key . '}';
            if (is_scalar($value) || $value instanceof \Stringable) {
                if (str_contains($text, $placeholder)) {
                    $text = str_replace($placeholder, (string) $value, $text);
                    continue;
                }
            }
            $rest[$key] = $value instanceof \Throwable ? $value::class . ': ' . $value->getMessage() : $value;
        }
        $line = gmdate('Y-m-d\TH:i:s\Z') . " {$level}: {$text}";
        if ($rest !== []) {
            $flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PARTIAL_OUTPUT_ON_ERROR
                | JSON_INVALID_UTF8_SUBSTITUTE;
            $line .= ' ' . json_encode($rest, $flags);
        }
        fwrite($this->stream, $line . "\n");
    }
}
