<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The component trapped during a call. The bridge threw its instance away; the PHP object
 * that made the call (a {@see Connector} or {@see ScimServer}) opens a fresh instance with
 * its stored configuration on its next call, so the next call works.
 *
 * `kind` is `deadline` ({@see DeadlineExceededException}), `memory`
 * ({@see MemoryLimitException}) or `trap` (anything else: a guest panic, an out-of-bounds
 * access, a bridge-side failure).
 */
class GuestTrapException extends \RuntimeException implements ScimProvisionerException
{
    /**
     * @param string $kind    `deadline`, `memory` or `trap`
     * @param string $guestMessage the bridge's description of the trap
     * @param string $call    the export that trapped, e.g. `[method]connector.provision`
     */
    public function __construct(
        public readonly string $kind,
        public readonly string $guestMessage,
        public readonly string $call = '',
    ) {
        parent::__construct(sprintf(
            'the component trapped%s (%s): %s; its instance was discarded and the next call starts on a fresh one',
            $call === '' ? '' : " in {$call}",
            $kind,
            $guestMessage,
        ));
    }

    /** The kind as an enum (`kind` holds its name). */
    public function trapKind(): TrapKind
    {
        return TrapKind::tryFrom($this->kind) ?? TrapKind::Trap;
    }

    /** The exception class for a trap kind. */
    public static function of(string $kind, string $message, string $call = ''): self
    {
        return match ($kind) {
            'deadline' => new DeadlineExceededException($kind, $message, $call),
            'memory' => new MemoryLimitException($kind, $message, $call),
            default => new self($kind, $message, $call),
        };
    }
}
