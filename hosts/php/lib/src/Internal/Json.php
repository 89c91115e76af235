<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\BridgeException;

/**
 * @internal JSON for the bridge: UTF-8, slashes and Unicode unescaped, errors thrown.
 */
final class Json
{
    private const ENCODE = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION
        | JSON_THROW_ON_ERROR;

    public static function encode(mixed $value): string
    {
        try {
            return json_encode($value, self::ENCODE);
        } catch (\JsonException $e) {
            throw new \ScimProvisioner\InvalidArgumentException(
                'cannot encode a value for the component as JSON (' . $e->getMessage()
                    . '); strings must be valid UTF-8',
                0,
                $e,
            );
        }
    }

    public static function decode(string $json): mixed
    {
        try {
            return json_decode($json, true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            throw new BridgeException('the bridge returned invalid JSON: ' . $e->getMessage(), 0, $e);
        }
    }

    /**
     * A JSON object from a document, for values the component hands over as text.
     *
     * @return array<string, mixed>
     */
    public static function decodeObject(string $json, string $what): array
    {
        try {
            $v = json_decode($json, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new BridgeException("{$what} is not valid JSON: " . $e->getMessage(), 0, $e);
        }
        if (!is_array($v)) {
            throw new BridgeException("{$what} is not a JSON object");
        }
        return $v;
    }
}
