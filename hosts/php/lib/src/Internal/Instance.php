<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use FFI\CData;
use ScimProvisioner\BridgeException;
use ScimProvisioner\Runtime;

/**
 * @internal One bridge instance (one wasmtime store) with at most one call in flight.
 * Steps are decoded JSON arrays, see scim_bridge.h.
 */
final class Instance
{
    private ?CData $ptr;
    private bool $inFlight = false;

    public function __construct(private readonly Runtime $runtime, CData $ptr)
    {
        $this->ptr = $ptr;
    }

    /**
     * Starts an export call (or a drop) and returns the first step.
     *
     * @param array<string, mixed> $request
     * @return array<string, mixed>
     */
    public function start(array $request): array
    {
        if ($this->inFlight) {
            throw new BridgeException('a call is already in flight on this instance');
        }
        $step = $this->decode($this->runtime->instanceCall($this->live(), Json::encode($request)));
        $this->inFlight = ($step['step'] ?? '') === 'import';
        return $step;
    }

    /**
     * Resumes the suspended call with the pending import's result.
     *
     * @return array<string, mixed>
     */
    public function resume(mixed $result): array
    {
        if (!$this->inFlight) {
            throw new BridgeException('no call is waiting for an import result on this instance');
        }
        $step = $this->decode($this->runtime->instanceResume($this->live(), Json::encode($result)));
        $this->inFlight = ($step['step'] ?? '') === 'import';
        return $step;
    }

    /** Frees the native instance (idempotent); a call in flight is abandoned. */
    public function release(): void
    {
        if ($this->ptr !== null) {
            $ptr = $this->ptr;
            $this->ptr = null;
            $this->inFlight = false;
            $this->runtime->instanceFree($ptr);
        }
    }

    /** True while a call waits for an import result. */
    public function isInFlight(): bool
    {
        return $this->inFlight;
    }

    public function isReleased(): bool
    {
        return $this->ptr === null;
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
        $this->release();
    }

    private function live(): CData
    {
        return $this->ptr ?? throw new BridgeException('this instance was released');
    }

    /** @return array<string, mixed> */
    private function decode(string $json): array
    {
        $step = Json::decode($json);
        if (!is_array($step) || !isset($step['step'])) {
            throw new BridgeException('the bridge returned something that is not a step: ' . substr($json, 0, 200));
        }
        return $step;
    }
}
