<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The plugin's own REST routes under `scim-provisioner/v1` (issue 31, part 3):
 *
 * - `GET /metrics`: {@see Metrics} in the Prometheus text format, for a scraper that presents
 *   the metrics token (`Authorization: Bearer …`; Prometheus: `authorization: credentials:`).
 *   The token is its own, not the SCIM one: reading counters must not let anyone provision.
 *   It is compared with the stored SHA-256 in constant time; cookies do not count.
 * - `GET /sync-progress`: the running (or last) sync's progress for the "Sync now" screen,
 *   to administrators (cookie and REST nonce, `manage_options`).
 */
final class MetricsRoutes
{
    public const NAMESPACE = 'scim-provisioner/v1';

    private function __construct(private readonly Plugin $plugin)
    {
    }

    public static function register(Plugin $plugin): void
    {
        $routes = new self($plugin);
        add_action('rest_api_init', [$routes, 'routes']);
    }

    /** @internal */
    public function routes(): void
    {
        register_rest_route(self::NAMESPACE, '/metrics', [
            'methods' => 'GET',
            'callback' => [$this, 'metrics'],
            'permission_callback' => [$this, 'authorizeScraper'],
        ]);
        register_rest_route(self::NAMESPACE, '/sync-progress', [
            'methods' => 'GET',
            'callback' => static fn (): \WP_REST_Response => new \WP_REST_Response(SyncProgress::read()),
            'permission_callback' => static fn (): bool => current_user_can('manage_options'),
        ]);
    }

    /** @internal The metrics token, and nothing else. */
    public function authorizeScraper(\WP_REST_Request $request): bool|\WP_Error
    {
        $token = self::bearer($request);
        if ($token !== null && Metrics::verifyToken($token)) {
            return true;
        }
        return new \WP_Error(
            'scim_metrics_unauthorized',
            'present the metrics token (Dashboard → SCIM provisioning) as a bearer token',
            ['status' => 401],
        );
    }

    /** @internal */
    public function metrics(): RawRestResponse
    {
        // Echoed as is by RestController::serveRaw: the text format, not JSON.
        return new RawRestResponse(Metrics::render($this->plugin), 200, [
            'Content-Type' => 'text/plain; version=0.0.4; charset=utf-8',
            'Cache-Control' => 'no-store',
        ]);
    }

    /** The bearer token of the request (Apache's mod_php hides Authorization from $_SERVER). */
    private static function bearer(\WP_REST_Request $request): ?string
    {
        $header = $request->get_header('authorization');
        if ($header === null && function_exists('getallheaders')) {
            foreach ((array) getallheaders() as $name => $value) {
                if (strcasecmp((string) $name, 'authorization') === 0) {
                    $header = (string) $value;
                }
            }
        }
        if ($header === null || !preg_match('/^\s*Bearer\s+(\S+)\s*$/i', $header, $m)) {
            return null;
        }
        return $m[1];
    }
}
