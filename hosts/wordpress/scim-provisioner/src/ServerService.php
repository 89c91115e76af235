<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\BridgeException;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Request;
use ScimProvisioner\Response;
use ScimProvisioner\ScimServer;

/**
 * The server role: WordPress answers SCIM at /wp-json/scim/v2 through the component, with
 * WordPress's own users as the directory ({@see WpDirectory}).
 *
 * Option `scim_provisioner_server` (autoload no): the bearer token's HMAC-SHA-256 with a
 * random salt of its own (the token is 256 random bits, so a fast keyed hash is as strong
 * as a slow one, and every request can afford it), when it was made, and the server-role
 * mapping (JSON rules, '' for {@see defaultMapping()}). The token itself is shown once, by
 * {@see rotateToken()}, and never stored.
 */
final class ServerService
{
    public const OPTION = 'scim_provisioner_server';
    public const NAMESPACE = 'scim/v2';

    private ?ScimServer $server = null;
    private ?string $serverToken = null;

    public function __construct(private readonly Plugin $plugin)
    {
    }

    /** Makes a new token (the old one stops working at once) and returns it: show it once. */
    public function rotateToken(): string
    {
        $token = rtrim(strtr(base64_encode(random_bytes(32)), '+/', '-_'), '=');
        $salt = bin2hex(random_bytes(16));
        $option = $this->option();
        $option['token_salt'] = $salt;
        $option['token_hash'] = hash_hmac('sha256', $token, $salt);
        $option['token_created'] = time();
        $this->write($option);
        return $token;
    }

    public function hasToken(): bool
    {
        return ($this->option()['token_hash'] ?? '') !== '';
    }

    /** When the token was made (Unix time), or null. */
    public function tokenCreatedAt(): ?int
    {
        $at = $this->option()['token_created'] ?? null;
        return is_int($at) ? $at : null;
    }

    /** Compares a presented token with the stored hash in constant time. */
    public function verifyToken(string $presented): bool
    {
        $option = $this->option();
        $hash = (string) ($option['token_hash'] ?? '');
        if ($hash === '' || $presented === '') {
            return false;
        }
        return hash_equals($hash, hash_hmac('sha256', $presented, (string) ($option['token_salt'] ?? '')));
    }

    /**
     * The users the identity provider created over SCIM, newest first.
     *
     * @return list<array{user_id: int, user_login: string, scim_id: string, created_at: int}>
     */
    public function createdUsers(int $limit = 200): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT u.ID AS user_id, u.user_login, m.meta_value AS scim_id, c.meta_value AS created
             FROM {$wpdb->usermeta} m
             JOIN {$wpdb->users} u ON u.ID = m.user_id
             LEFT JOIN {$wpdb->usermeta} c ON c.user_id = m.user_id AND c.meta_key = %s
             WHERE m.meta_key = %s ORDER BY u.ID DESC LIMIT %d",
            WpDirectory::META_CREATED,
            WpDirectory::META_ID,
            $limit,
        ), ARRAY_A);
        return array_map(static fn (array $r): array => [
            'user_id' => (int) $r['user_id'],
            'user_login' => (string) $r['user_login'],
            'scim_id' => (string) $r['scim_id'],
            'created_at' => is_string($r['created']) && ($t = strtotime($r['created'])) !== false ? $t : 0,
        ], is_array($rows) ? $rows : []);
    }

    /** The server-role mapping rules in force. @return list<array<string, mixed>> */
    public function mappingRules(): array
    {
        $text = (string) ($this->option()['mapping'] ?? '');
        $rules = $text === '' ? null : json_decode($text, true);
        return is_array($rules) && array_is_list($rules) ? $rules : self::defaultMapping();
    }

    /**
     * Saves the server-role mapping ('' for the default), checked by the component.
     *
     * @return array<string, string> errors by setting name; empty when saved
     */
    public function saveMapping(string $json): array
    {
        $json = trim($json);
        if ($json !== '') {
            $rules = json_decode($json, true);
            if (!is_array($rules) || !array_is_list($rules)) {
                return ['mapping' => 'the mapping is a JSON array of rules'];
            }
            try {
                $runtime = $this->plugin->runtime();
                $config = [
                    'base_url' => 'https://offline.invalid/scim/v2',
                    'token' => 'x',
                    'policy' => ['mapping' => $rules],
                ];
                ScimServer::open($runtime, $config, new WpDirectory($runtime));
            } catch (ProvisioningException $e) {
                return ['mapping' => $e->getMessage()];
            } catch (BridgeException) {
                // No FFI here: kept; the component checks it when it opens.
            }
        }
        $option = $this->option();
        $option['mapping'] = $json;
        $this->write($option);
        return [];
    }

    /**
     * The reverse mapping's rules: SCIM attributes into WordPress fields. `roles` only
     * assign roles that exist and carry no administrative capability ({@see WpDirectory}).
     *
     * @return list<array<string, mixed>>
     */
    public static function defaultMapping(): array
    {
        return [
            ['target' => 'userName', 'source' => 'user_login', 'required' => true],
            ['target' => 'emails', 'source' => 'user_email'],
            ['target' => 'name.givenName', 'source' => 'first_name'],
            ['target' => 'name.familyName', 'source' => 'last_name'],
            ['target' => 'displayName', 'source' => 'display_name'],
            ['target' => 'nickName', 'source' => 'nickname'],
            ['target' => 'profileUrl', 'source' => 'user_url'],
            ['target' => 'roles', 'source' => 'roles'],
            ['target' => 'active', 'source' => '@active'],
        ];
    }

    /**
     * Answers one SCIM request that already passed the bearer-token check ($token is the
     * token it presented). Never throws: failures outside the component are SCIM errors.
     */
    public function handle(Request $request, string $token): Response
    {
        if (($problem = $this->plugin->ffiProblem()) !== null) {
            return Response::error(503, 'the SCIM service is not available on this site: ' . $problem);
        }
        try {
            $server = $this->open($token);
        } catch (ProvisioningException $e) {
            return Response::error(500, 'the SCIM service is misconfigured: ' . $e->getMessage());
        } catch (\Throwable $e) {
            error_log('scim-provisioner: the SCIM server could not start: ' . $e->getMessage());
            return Response::error(503, 'the SCIM service is not available: ' . $e->getMessage());
        }
        try {
            return DatabaseGuard::run(static fn (): Response => $server->handle($request));
        } catch (GuestTrapException $e) {
            error_log('scim-provisioner: ' . $e->getMessage());
            return Response::error(500, 'internal error: the request could not be completed');
        } catch (DatabaseUnavailableException $e) {
            return Response::error(503, 'the site\'s database is unavailable; try again later');
        } catch (\Throwable $e) {
            error_log('scim-provisioner: ' . $e::class . ': ' . $e->getMessage());
            return Response::error(500, 'internal error: the request could not be completed');
        }
    }

    /** The base URL SCIM locations are built on (pretty permalinks or ?rest_route=). */
    public function baseUrl(): string
    {
        return rtrim(rest_url(self::NAMESPACE), '/');
    }

    private function open(string $token): ScimServer
    {
        if ($this->server !== null && $this->serverToken === $token) {
            return $this->server;
        }
        $runtime = $this->plugin->runtime();
        $this->server = ScimServer::open($runtime, [
            'base_url' => $this->baseUrl(),
            // The component compares the request's bearer token with this one: it is the
            // token the request presented, already checked against the stored hash.
            'token' => $token,
            'max_results' => 200,
            'bulk_max_operations' => 100,
            'bulk_max_payload' => 1024 * 1024,
            'policy' => ['mapping' => $this->mappingRules()],
        ], new WpDirectory($runtime));
        $this->serverToken = $token;
        return $this->server;
    }

    /** @return array<string, mixed> */
    private function option(): array
    {
        $o = get_option(self::OPTION, []);
        return is_array($o) ? $o : [];
    }

    /** @param array<string, mixed> $option */
    private function write(array $option): void
    {
        if (get_option(self::OPTION, null) === null) {
            add_option(self::OPTION, $option, '', 'no');
        } else {
            update_option(self::OPTION, $option, false);
        }
    }
}
