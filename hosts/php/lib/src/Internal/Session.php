<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\BridgeException;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Logger;
use ScimProvisioner\Runtime;

/**
 * @internal What {@see \ScimProvisioner\Connector} and {@see \ScimProvisioner\ScimServer}
 * share: an instance with one open resource (the connector or the server), calls driven
 * through the suspend/resume protocol, and recovery after a trap: the instance is dropped,
 * and the next call opens a fresh one with the stored configuration.
 */
abstract class Session
{
    private ?Instance $instance = null;
    private ?int $handle = null;
    /** How many times a fresh instance was opened (1 after open; +1 after each trap). */
    private int $opens = 0;

    protected function __construct(protected readonly Runtime $runtime, protected readonly Logger $logger)
    {
    }

    /**
     * The open call: [interface, function, args].
     *
     * @return array{0: string, 1: string, 2: list<mixed>}
     */
    abstract protected function openRequest(): array;

    /** Turns the open call's error value into an exception. */
    abstract protected function openError(mixed $error): \Throwable;

    /**
     * Serves one import and returns its WIT result value. Must not throw for failures the
     * WIT can express (those become the import's error value).
     *
     * @param list<mixed> $args
     */
    abstract protected function serveImport(string $interface, string $func, array $args): mixed;

    /** The export interface of this session's resource. */
    abstract protected function exportInterface(): string;

    /**
     * Runs once the resource is open on a fresh instance, before any other call on it: for
     * what a session asks once per instance (what it answers is fixed for the resource's
     * lifetime, and a trap loses it with the instance).
     */
    protected function opened(): void
    {
    }

    /**
     * How many instances this object has opened: 1 at first, one more after each trap.
     */
    public function instancesOpened(): int
    {
        return $this->opens;
    }

    /**
     * Drops the resource and frees the instance now (otherwise done on destruction). The
     * next call opens a fresh one.
     */
    public function close(): void
    {
        if ($this->instance !== null && $this->handle !== null && !$this->instance->isReleased()) {
            try {
                $step = $this->instance->start(['drop' => $this->handle]);
                if (($step['step'] ?? '') === 'import') {
                    throw new BridgeException('dropping the resource asked for an import');
                }
            } catch (\Throwable $e) {
                $this->logger->warning('closing the component instance: ' . $e->getMessage());
            }
        }
        $this->discard();
    }

    /** A native handle cannot be copied: clone is refused. */
    private function __clone()
    {
    }

    /**
     * A native handle (and, for sessions, credentials) cannot be serialized.
     *
     * @return array<string, mixed>
     */
    public function __serialize(): array
    {
        throw new \ScimProvisioner\LogicException(static::class . ' holds a native handle and cannot be serialized');
    }

    public function __destruct()
    {
        $this->discard();
    }

    /** Opens the instance and the resource, unless they are open. */
    protected function ensureOpen(): int
    {
        if ($this->instance !== null && $this->handle !== null && !$this->instance->isReleased()) {
            return $this->handle;
        }
        $this->discard();
        $this->instance = $this->runtime->newInstance();
        $this->opens++;
        [$interface, $func, $args] = $this->openRequest();
        $result = $this->run(new Call($this->instance, $interface, $func, $args, $this->logger));
        if (!is_array($result) || !isset($result['tag'])) {
            $this->discard();
            throw new BridgeException("{$func} returned no result");
        }
        if ($result['tag'] !== 'ok') {
            $this->discard();
            throw $this->openError($result['val'] ?? null);
        }
        $this->handle = (int) $result['val'];
        try {
            $this->opened();
        } catch (\Throwable $e) {
            // Half open is not open: the next call starts over on a fresh instance.
            $this->discard();
            throw $e;
        }
        return $this->handle;
    }

    /**
     * Calls a method of the open resource to the end and returns its value.
     *
     * @param list<mixed> $args the arguments after the handle
     */
    protected function invoke(string $func, array $args): mixed
    {
        return $this->run($this->begin($func, $args));
    }

    /**
     * Starts a method call and leaves it at its first import (or done), for a driver that
     * interleaves several calls ({@see \ScimProvisioner\Concurrent}).
     *
     * @param list<mixed> $args the arguments after the handle
     * @internal
     */
    public function begin(string $func, array $args): Call
    {
        $handle = $this->ensureOpen();
        $instance = $this->instanceOrFail();
        try {
            return new Call($instance, $this->exportInterface(), $func, [$handle, ...$args], $this->logger);
        } catch (\Throwable $e) {
            // Arguments that could not be encoded, or a request the bridge refused, leave the
            // instance as it was; anything that left a call suspended costs the instance.
            if ($instance->isInFlight()) {
                $this->discard();
            }
            throw $e;
        }
    }

    /**
     * Serves the call's imports one after the other until it is done.
     *
     * @internal
     */
    public function serve(Call $call): void
    {
        $import = $call->import ?? throw new BridgeException('the call is not waiting for an import');
        try {
            $call->resume($this->serveImport($import['interface'], $import['func'], $import['args']));
        } catch (\Throwable $e) {
            // The call cannot continue; the instance holds a suspended call: throw it away.
            $this->discard();
            throw $e;
        }
    }

    /**
     * The call's value once it is done; after a trap the instance is discarded (the next
     * call opens a fresh one) and the trap is thrown.
     *
     * @internal
     * @throws GuestTrapException
     */
    public function finish(Call $call): mixed
    {
        if ($call->trapped()) {
            $this->discard();
        }
        return $call->result();
    }

    /** Runs a started call to its end. */
    protected function run(Call $call): mixed
    {
        while (!$call->isDone()) {
            $this->serve($call);
        }
        return $this->finish($call);
    }

    protected function discard(): void
    {
        $this->handle = null;
        if ($this->instance !== null) {
            $this->instance->release();
            $this->instance = null;
        }
    }

    private function instanceOrFail(): Instance
    {
        return $this->instance ?? throw new BridgeException('no instance is open');
    }
}
