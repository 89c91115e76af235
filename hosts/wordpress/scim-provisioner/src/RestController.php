<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\Request;
use ScimProvisioner\Response;

/**
 * The SCIM routes: `register_rest_route('scim/v2', …)` for /Users, /Groups,
 * /ServiceProviderConfig, /Schemas, /ResourceTypes, /Bulk and /.search (and a catch-all, so
 * an unknown path gets the component's SCIM 404), all answered by the component's server
 * role.
 *
 * - Authentication is the bearer token only: `permission_callback` compares it with the
 *   stored hash in constant time. WordPress's cookie authentication never applies here: for
 *   these routes the current user is reset to nobody, whatever cookie and nonce came with
 *   the request, so a logged-in user's browser gets 401 like anyone without the token.
 * - The body is the component's bytes: the callback returns a {@see RawRestResponse} and
 *   `rest_pre_serve_request` echoes it, so WordPress neither encodes the JSON again nor sends
 *   its own Content-Type (the component's `application/scim+json` goes out).
 * - WordPress's own errors on these routes (no token, an invalid nonce) become SCIM errors.
 */
final class RestController
{
    private const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
    private const ROUTES = [
        '/Users',
        '/Users/(?P<id>[^/]+)',
        '/Groups',
        '/Groups/(?P<id>[^/]+)',
        '/ServiceProviderConfig',
        '/Schemas',
        '/Schemas/(?P<id>.+)',
        '/ResourceTypes',
        '/ResourceTypes/(?P<id>[^/]+)',
        '/Bulk',
        '/\.search',
        '/(?P<path>.+)',
    ];

    private function __construct(private readonly Plugin $plugin)
    {
    }

    public static function register(Plugin $plugin): void
    {
        $controller = new self($plugin);
        add_action('rest_api_init', [$controller, 'routes']);
        add_filter('rest_authentication_errors', [$controller, 'noCookieAuth'], 1000);
        add_filter('rest_post_dispatch', [$controller, 'scimErrors'], 1000, 3);
        add_filter('rest_pre_serve_request', [$controller, 'serveRaw'], 1000, 4);
    }

    /** @internal */
    public function routes(): void
    {
        foreach (self::ROUTES as $route) {
            register_rest_route(ServerService::NAMESPACE, $route, [
                'methods' => self::METHODS,
                'callback' => [$this, 'handle'],
                'permission_callback' => [$this, 'authorize'],
            ]);
        }
    }

    /**
     * @internal The bearer token, and nothing else.
     */
    public function authorize(\WP_REST_Request $request): bool|\WP_Error
    {
        $token = self::bearer($request);
        if ($token !== null && $this->plugin->server()->verifyToken($token)) {
            return true;
        }
        return new \WP_Error(
            'scim_unauthorized',
            'authentication required: present the bearer token from Settings → SCIM Provisioning → Server side',
            ['status' => 401],
        );
    }

    /** @internal */
    public function handle(\WP_REST_Request $request): \WP_REST_Response
    {
        $token = (string) self::bearer($request);
        $path = substr($request->get_route(), strlen('/' . ServerService::NAMESPACE));
        $headers = [];
        foreach ($request->get_headers() as $name => $values) {
            $canonical = str_replace(' ', '-', ucwords(str_replace('_', ' ', (string) $name)));
            foreach ((array) $values as $value) {
                $headers[] = [$canonical, (string) $value];
            }
        }
        if ($request->get_header('authorization') === null) {
            $headers[] = ['Authorization', 'Bearer ' . $token];
        }
        $scim = new Request(
            $request->get_method(),
            $path === '' ? '/' : $path,
            self::rawQuery(),
            $headers,
            (string) $request->get_body(),
        );
        $started = hrtime(true);
        $response = $this->plugin->server()->handle($scim, $token);
        Metrics::serverRequest($scim->method, $scim->path, $response->status, (hrtime(true) - $started) / 1e9);
        return self::toRest($response);
    }

    /**
     * @internal For the SCIM routes, whoever a cookie says the user is does not count.
     */
    public function noCookieAuth(mixed $result): mixed
    {
        if (!self::isScimRequest()) {
            return $result;
        }
        wp_set_current_user(0);
        return true;
    }

    /**
     * @internal WordPress's error responses on the SCIM routes, as SCIM errors.
     */
    public function scimErrors(mixed $result, \WP_REST_Server $server, \WP_REST_Request $request): mixed
    {
        if (
            !$result instanceof \WP_REST_Response || $result instanceof RawRestResponse || !$result->is_error()
            || !str_starts_with($request->get_route(), '/' . ServerService::NAMESPACE)
        ) {
            return $result;
        }
        $status = $result->get_status();
        $path = substr($request->get_route(), strlen('/' . ServerService::NAMESPACE));
        Metrics::serverRequest($request->get_method(), $path, $status, null);
        $data = $result->get_data();
        $detail = is_array($data) && isset($data['message'])
            ? wp_strip_all_tags((string) $data['message'])
            : 'the request failed';
        $response = self::toRest(Response::error($status, $detail));
        if ($status === 401) {
            $response->header('WWW-Authenticate', 'Bearer realm="SCIM"');
        }
        return $response;
    }

    /**
     * @internal Sends a RawRestResponse's body as is.
     */
    public function serveRaw(bool $served, mixed $result, \WP_REST_Request $request, \WP_REST_Server $server): bool
    {
        if ($served || !$result instanceof RawRestResponse) {
            return $served;
        }
        if ($request->get_method() !== 'HEAD') {
            // SCIM JSON from the component, sent as application/scim+json: not HTML, nothing to escape.
            echo $result->body; // phpcs:ignore WordPress.Security.EscapeOutput
        }
        return true;
    }

    private static function toRest(Response $response): RawRestResponse
    {
        $headers = [];
        foreach ($response->headers as [$name, $value]) {
            if (strcasecmp($name, 'content-length') !== 0) {
                $headers[$name] = $value;
            }
        }
        return new RawRestResponse($response->body, $response->status, $headers);
    }

    /**
     * The bearer token of the request, or null. Apache's mod_php keeps Authorization out of
     * $_SERVER, so its headers are asked too.
     */
    private static function bearer(\WP_REST_Request $request): ?string
    {
        $header = $request->get_header('authorization');
        if ($header === null) {
            $all = function_exists('getallheaders') ? getallheaders() : [];
            foreach (is_array($all) ? $all : [] as $name => $value) {
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

    /** The query string as sent (percent-encoded), without WordPress's rest_route. */
    private static function rawQuery(): string
    {
        $query = (string) ($_SERVER['QUERY_STRING'] ?? '');
        if ($query === '') {
            return '';
        }
        $parts = array_filter(
            explode('&', $query),
            static fn (string $p): bool => $p !== '' && !str_starts_with($p, 'rest_route='),
        );
        return implode('&', $parts);
    }

    private static function isScimRequest(): bool
    {
        global $wp;
        $route = is_object($wp) && isset($wp->query_vars['rest_route']) ? (string) $wp->query_vars['rest_route'] : '';
        $prefix = '/' . ServerService::NAMESPACE;
        return $route === $prefix || str_starts_with($route, $prefix . '/');
    }
}
