<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The Prometheus text exposition format (version 0.0.4) for counters a PHP host keeps itself
 * (issue 31, part 3; docs/metrics.md): label escaping, number formatting, and rendering rows
 * of `metric`, `labels` (already `a="x",b="y"`), `value` under their families' HELP and TYPE
 * lines. Also the metrics token's checks: the token is kept only as its SHA-256 and compared
 * in constant time.
 */
final class PrometheusText
{
    public const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

    /** `a="x",b="y"` with the format's escaping, in the order given. */
    public static function labelText(array $labels): string
    {
        $parts = [];
        foreach ($labels as $name => $value) {
            $value = str_replace(['\\', '"', "\n"], ['\\\\', '\\"', '\\n'], (string) $value);
            $parts[] = $name . '="' . $value . '"';
        }
        return implode(',', $parts);
    }

    public static function number(float $v): string
    {
        if (is_nan($v)) {
            return 'NaN';
        }
        if (is_infinite($v)) {
            return $v > 0 ? '+Inf' : '-Inf';
        }
        return $v == floor($v) && abs($v) < 1e15
            ? sprintf('%.0f', $v)
            : rtrim(rtrim(sprintf('%.6F', $v), '0'), '.');
    }

    /**
     * Every family (name => [type, help]) with its rows; a histogram's `_bucket`, `_sum` and
     * `_count` rows go under it, buckets in rising `le`. Rows of no listed family are left out.
     *
     * @param array<string, array{0: string, 1: string}> $families
     * @param iterable<array{metric: string, labels: string, value: float}> $rows
     */
    public static function render(array $families, iterable $rows): string
    {
        $byFamily = [];
        foreach ($rows as $row) {
            $family = (string) preg_replace('/_(bucket|sum|count)$/', '', $row['metric']);
            $family = isset($families[$family]) ? $family : $row['metric'];
            if (isset($families[$family])) {
                $byFamily[$family][] = $row;
            }
        }
        $out = '';
        foreach ($families as $name => [$type, $help]) {
            $help = str_replace(['\\', "\n"], ['\\\\', '\\n'], $help);
            $out .= "# HELP {$name} {$help}\n# TYPE {$name} {$type}\n";
            $rows = $byFamily[$name] ?? [];
            usort($rows, static fn (array $a, array $b): int => self::sortKey($a) <=> self::sortKey($b));
            foreach ($rows as $row) {
                $labels = $row['labels'] === '' ? '' : '{' . $row['labels'] . '}';
                $out .= $row['metric'] . $labels . ' ' . self::number((float) $row['value']) . "\n";
            }
        }
        return $out;
    }

    /** The SHA-256 (hex) kept for a metrics token. */
    public static function tokenHash(string $token): string
    {
        return hash('sha256', $token);
    }

    /** Whether a presented token matches the kept SHA-256, in constant time; never for an empty one. */
    public static function verifyToken(string $storedSha256, ?string $presented): bool
    {
        return $storedSha256 !== '' && $presented !== null && $presented !== ''
            && hash_equals($storedSha256, self::tokenHash($presented));
    }

    /** The token of an `Authorization: Bearer …` header; null for none or another scheme. */
    public static function bearer(?string $authorization): ?string
    {
        if ($authorization === null || !preg_match('/^\s*Bearer\s+(\S+)\s*$/i', $authorization, $m)) {
            return null;
        }
        return $m[1];
    }

    /** @return array{0: string, 1: string, 2: float} the series' labels but `le`, the metric, then `le` */
    private static function sortKey(array $row): array
    {
        $le = 0.0;
        if (preg_match('/(?:^|,)le="([^"]+)"/', $row['labels'], $m)) {
            $le = $m[1] === '+Inf' ? INF : (float) $m[1];
        }
        $series = (string) preg_replace('/,?le="[^"]+"/', '', $row['labels']);
        return [$series, $row['metric'], $le];
    }
}
