<?php

declare(strict_types=1);

namespace ScimProvisioner;

/** What a provisioning call would do, decided without sending anything (WIT `plan`). */
final class Plan
{
    public function __construct(
        public readonly PlannedAction $action,
        /** Why nothing would be done, for `skip`. */
        public readonly ?string $reason = null,
    ) {
    }

    /** @param array{action: string, reason?: string|null} $wit */
    public static function fromWit(array $wit): self
    {
        return new self(PlannedAction::from((string) $wit['action']), $wit['reason'] ?? null);
    }

    /** @return array{action: string, reason: string|null} */
    public function toWit(): array
    {
        return ['action' => $this->action->value, 'reason' => $this->reason];
    }
}
