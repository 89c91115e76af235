<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The component's `provisioning-error`: why a client-role call failed.
 *
 * - `case`: `invalid-config`, `missing-attribute`, `transport`, `scim`,
 *   `unexpected-response` or `other`;
 * - `status`: the HTTP status (`scim`, `unexpected-response`);
 * - `scimType`, `detail`: from a SCIM error body (`scim`);
 * - `retry`: `permanent`, `backoff` or `after-seconds` (then `retryAfterSeconds`), the
 *   component's own classification, so a host schedules retries without guessing;
 * - `transportError`: the `transport-error` case for `transport`;
 * - `userId`, `attribute`: for `missing-attribute`.
 *
 * The message is a sentence for people (what went wrong, what to check). It never holds a
 * secret: the component scrubs credentials from what it reports.
 */
final class ProvisioningException extends \RuntimeException implements ScimProvisionerException
{
    public const CASES = ['invalid-config', 'missing-attribute', 'transport', 'scim', 'unexpected-response', 'other'];

    /**
     * @param array<string, mixed>|null $wit the WIT value this came from, for {@see toWit()}
     */
    public function __construct(
        public readonly string $case,
        string $message,
        public readonly ?int $status = null,
        public readonly ?string $scimType = null,
        public readonly ?string $detail = null,
        public readonly string $retry = 'permanent',
        public readonly ?int $retryAfterSeconds = null,
        public readonly ?string $transportError = null,
        public readonly ?string $userId = null,
        public readonly ?string $attribute = null,
        private readonly ?array $wit = null,
    ) {
        parent::__construct($message);
    }

    /** A configuration the library refused before the component saw it. */
    public static function invalidConfig(string $message): self
    {
        return new self(
            'invalid-config',
            "invalid configuration: {$message}",
            wit: ['tag' => 'invalid-config', 'val' => $message],
        );
    }

    /**
     * From a WIT `provisioning-error` value.
     *
     * @param array{tag: string, val?: mixed} $wit
     */
    public static function fromWit(array $wit): self
    {
        $tag = (string) ($wit['tag'] ?? 'other');
        $val = $wit['val'] ?? null;
        switch ($tag) {
            case 'invalid-config':
                return new self($tag, 'invalid configuration: ' . $val, wit: $wit);
            case 'missing-attribute':
                $userId = (string) ($val['user-id'] ?? '');
                $attr = (string) ($val['attribute'] ?? '');
                return new self(
                    $tag,
                    "user {$userId}: required attribute {$attr} has no value; nothing was sent",
                    userId: $userId,
                    attribute: $attr,
                    wit: $wit,
                );
            case 'transport':
                $error = (array) ($val['error'] ?? []);
                [$retry, $after] = self::retryOf($val['retry'] ?? null);
                $case = (string) ($error['tag'] ?? 'other');
                $m = (string) ($error['val'] ?? '');
                $text = match ($case) {
                    'denied' => "request refused by the host: {$m}",
                    'invalid-url' => "invalid URL: {$m}",
                    'cannot-connect' => "cannot connect to the SCIM server ({$m}); "
                        . 'check the base URL and that the server is running',
                    'tls' => "TLS failure ({$m}); check the server's certificate",
                    'timeout' => 'the SCIM server did not answer in time',
                    default => "transport failure: {$m}",
                };
                return new self(
                    $tag,
                    $text . self::retryNote($retry, $after),
                    retry: $retry,
                    retryAfterSeconds: $after,
                    transportError: $case,
                    detail: $m === '' ? null : $m,
                    wit: $wit,
                );
            case 'scim':
                $status = (int) ($val['status'] ?? 0);
                $scimType = isset($val['scim-type']) ? (string) $val['scim-type'] : null;
                $detail = isset($val['detail']) ? (string) $val['detail'] : null;
                [$retry, $after] = self::retryOf($val['retry'] ?? null);
                // The component names the token endpoint first in what went wrong there.
                $fromTokenEndpoint = $detail !== null && str_starts_with($detail, 'OAuth 2.0 token endpoint');
                $text = $fromTokenEndpoint
                    ? "the authorization server refused a token (HTTP {$status})"
                    : self::scimStatusText($status);
                if ($scimType !== null && !$fromTokenEndpoint) {
                    $text .= ", scimType {$scimType}";
                }
                if ($detail !== null) {
                    $text .= ": {$detail}";
                }
                return new self(
                    $tag,
                    $text . self::retryNote($retry, $after),
                    $status,
                    $scimType,
                    $detail,
                    $retry,
                    $after,
                    wit: $wit,
                );
            case 'unexpected-response':
                $status = (int) ($val['status'] ?? 0);
                $reason = (string) ($val['reason'] ?? '');
                [$retry, $after] = self::retryOf($val['retry'] ?? null);
                $hint = match ($status) {
                    401 => ' (authentication rejected: check the bearer token)',
                    403 => ' (forbidden: the token lacks permission)',
                    404 => ' (check the SCIM base URL)',
                    default => '',
                };
                return new self(
                    $tag,
                    "not a SCIM answer (HTTP {$status}){$hint}: {$reason}" . self::retryNote($retry, $after),
                    $status,
                    detail: $reason,
                    retry: $retry,
                    retryAfterSeconds: $after,
                    wit: $wit,
                );
            default:
                return new self('other', (string) (is_string($val) ? $val : json_encode($val)), wit: $wit);
        }
    }

    /**
     * The WIT value (as the component gave it, or built for library-made errors).
     *
     * @return array<string, mixed>
     */
    public function toWit(): array
    {
        return $this->wit ?? ['tag' => 'other', 'val' => $this->getMessage()];
    }

    /** The case as an enum (`case` holds its WIT name). */
    public function errorCase(): ProvisioningErrorCase
    {
        return ProvisioningErrorCase::tryFrom($this->case) ?? ProvisioningErrorCase::Other;
    }

    /** The retry class as an enum (`retry` holds its WIT name). */
    public function retryClass(): RetryClass
    {
        return RetryClass::tryFrom($this->retry) ?? RetryClass::Permanent;
    }

    /** True when trying again may help (`backoff` or `after-seconds`). */
    public function isRetryable(): bool
    {
        return $this->retry !== 'permanent';
    }

    /**
     * @return array{0: string, 1: int|null}
     */
    private static function retryOf(mixed $retry): array
    {
        if (!is_array($retry)) {
            return ['permanent', null];
        }
        $tag = (string) ($retry['tag'] ?? 'permanent');
        return [$tag, $tag === 'after-seconds' ? (int) ($retry['val'] ?? 0) : null];
    }

    private static function retryNote(string $retry, ?int $after): string
    {
        return match ($retry) {
            'backoff' => ' (retryable)',
            'after-seconds' => " (retry after {$after} s)",
            default => '',
        };
    }

    /** What a SCIM server's error status says, before its scimType and detail. */
    private static function scimStatusText(int $status): string
    {
        return match ($status) {
            401 => 'authentication rejected (HTTP 401): check the bearer token',
            403 => 'access forbidden (HTTP 403): the token lacks permission',
            404 => 'not found (HTTP 404): check the SCIM base URL',
            default => "the SCIM server answered HTTP {$status}",
        };
    }
}
