<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\BridgeException;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Logger;

/**
 * @internal One export call on an instance, as a state machine: it is either waiting for an
 * import (`$import` names it), or done (with a result or a trap). Whoever drives it serves
 * each import and resumes, possibly interleaved with other calls on other instances.
 */
final class Call
{
    /** @var array{interface: string, func: string, args: list<mixed>}|null the import the call waits for */
    public ?array $import = null;
    private bool $done = false;
    private mixed $result = null;
    private ?GuestTrapException $trap = null;

    /**
     * @param list<mixed> $args
     */
    public function __construct(
        private readonly Instance $instance,
        public readonly string $interface,
        public readonly string $func,
        array $args,
        private readonly Logger $logger,
    ) {
        $this->absorb($instance->start(['interface' => $interface, 'func' => $func, 'args' => $args]));
    }

    /** Resumes with the WIT result of the import it waited for. */
    public function resume(mixed $witResult): void
    {
        if ($this->done) {
            throw new BridgeException("the call {$this->func} has already finished");
        }
        $this->import = null;
        $this->absorb($this->instance->resume($witResult));
    }

    public function isDone(): bool
    {
        return $this->done;
    }

    public function trapped(): bool
    {
        return $this->trap !== null;
    }

    /**
     * The export's return value (canonical JSON, decoded).
     *
     * @throws GuestTrapException when the guest trapped
     */
    public function result(): mixed
    {
        if (!$this->done) {
            throw new BridgeException("the call {$this->func} is still waiting for {$this->import['func']}");
        }
        if ($this->trap !== null) {
            throw $this->trap;
        }
        return $this->result;
    }

    /**
     * @param array<string, mixed> $step
     */
    private function absorb(array $step): void
    {
        foreach ((array) ($step['logs'] ?? []) as $line) {
            if (is_array($line) && count($line) >= 2) {
                $this->logger->log(self::level((string) $line[0]), (string) $line[1], ['source' => 'component']);
            }
        }
        switch ($step['step']) {
            case 'import':
                $this->import = [
                    'interface' => (string) ($step['interface'] ?? ''),
                    'func' => (string) ($step['func'] ?? ''),
                    'args' => array_values((array) ($step['args'] ?? [])),
                ];
                return;
            case 'done':
                $this->done = true;
                $this->result = $step['result'] ?? null;
                return;
            case 'trap':
                $this->done = true;
                $this->trap = GuestTrapException::of(
                    (string) ($step['kind'] ?? 'trap'),
                    (string) ($step['message'] ?? ''),
                    $this->func,
                );
                return;
            case 'error':
                $this->done = true;
                throw new BridgeException(
                    "the bridge refused the call {$this->func}: " . (string) ($step['message'] ?? '')
                );
            default:
                $this->done = true;
                throw new BridgeException('unknown bridge step ' . json_encode($step['step']));
        }
    }

    /** The PSR-3 level of a component log level. */
    public static function level(string $witLevel): string
    {
        return match ($witLevel) {
            'trace', 'debug' => 'debug',
            'info' => 'info',
            'warn' => 'warning',
            'error' => 'error',
            default => 'notice',
        };
    }
}
