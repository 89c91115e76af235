<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * A REST response whose body is already the bytes to send (the component's SCIM JSON):
 * {@see RestController::serveRaw()} echoes it as is instead of letting WordPress encode it
 * again.
 */
final class RawRestResponse extends \WP_REST_Response
{
    public function __construct(public readonly string $body, int $status, array $headers)
    {
        parent::__construct(null, $status, $headers);
    }
}
