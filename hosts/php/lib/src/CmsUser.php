<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * A user record of the CMS (WIT `cms-user`). Field values are strings (dates as ISO 8601),
 * numbers, booleans, lists of strings (roles) or null.
 *
 * @phpstan-type FieldValue string|int|float|bool|list<string>|null
 */
final class CmsUser
{
    /**
     * @param string $id the CMS's own id
     * @param array<string, string|int|float|bool|list<string>|null> $fields named fields, such as
     *     `name`, `mail`, `field_first_name`, `roles`
     * @param bool $active false when the user is blocked
     */
    public function __construct(
        public readonly string $id,
        public readonly array $fields,
        public readonly bool $active = true,
    ) {
        foreach ($fields as $name => $value) {
            self::fieldToWit((string) $name, $value);
        }
    }

    /** The value of one field, or null. */
    public function field(string $name): mixed
    {
        return $this->fields[$name] ?? null;
    }

    /**
     * @return array{id: string, fields: list<array{0: string, 1: array{tag: string, val?: mixed}}>, active: bool}
     */
    public function toWit(): array
    {
        $fields = [];
        foreach ($this->fields as $name => $value) {
            $fields[] = [(string) $name, self::fieldToWit((string) $name, $value)];
        }
        return ['id' => $this->id, 'fields' => $fields, 'active' => $this->active];
    }

    /**
     * @internal The WIT form with only the fields named in `$keep` (in this user's order) and
     * the id only when `$withId`: what {@see Connector::plan()} passes. Cut before converting,
     * so the fields the scope does not read are neither converted nor encoded for the bridge.
     *
     * @param array<array-key, mixed> $keep the field names to pass, as keys
     * @return array{id: string, fields: list<array{0: string, 1: array{tag: string, val?: mixed}}>, active: bool}
     */
    public function toWitOnly(array $keep, bool $withId): array
    {
        $fields = [];
        foreach ($keep === [] ? [] : array_intersect_key($this->fields, $keep) as $name => $value) {
            $fields[] = [(string) $name, self::fieldToWit((string) $name, $value)];
        }
        return ['id' => $withId ? $this->id : '', 'fields' => $fields, 'active' => $this->active];
    }

    /**
     * @param array{id: string, fields: list<array{0: string, 1: array{tag: string, val?: mixed}}>, active: bool} $wit
     */
    public static function fromWit(array $wit): self
    {
        $fields = [];
        foreach ($wit['fields'] ?? [] as [$name, $value]) {
            $fields[(string) $name] = match ($value['tag'] ?? 'null') {
                'text' => (string) $value['val'],
                'number' => (float) $value['val'],
                'boolean' => (bool) $value['val'],
                'text-list' => array_map('strval', (array) $value['val']),
                default => null,
            };
        }
        return new self((string) ($wit['id'] ?? ''), $fields, (bool) ($wit['active'] ?? true));
    }

    /**
     * @return array{tag: string, val?: mixed}
     */
    private static function fieldToWit(string $name, mixed $value): array
    {
        return match (true) {
            $value === null => ['tag' => 'null'],
            is_string($value) => ['tag' => 'text', 'val' => $value],
            is_bool($value) => ['tag' => 'boolean', 'val' => $value],
            is_int($value), is_float($value) => is_finite((float) $value)
                ? ['tag' => 'number', 'val' => (float) $value]
                : throw new InvalidArgumentException("field {$name}: a number must be finite"),
            is_array($value) && array_is_list($value) => ['tag' => 'text-list', 'val' => array_map(
                static fn (mixed $v): string => is_scalar($v) ? (is_bool($v) ? ($v ? 'true' : 'false') : (string) $v)
                    : throw new InvalidArgumentException("field {$name}: a list may hold only strings"),
                $value,
            )],
            default => throw new InvalidArgumentException(
                "field {$name}: a CMS field is a string, number, boolean, list of strings or null, not "
                    . get_debug_type($value)
            ),
        };
    }
}
