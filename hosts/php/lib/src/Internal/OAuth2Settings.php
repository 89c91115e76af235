<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

use ScimProvisioner\ProvisioningException;

/**
 * A connector's `'auth' => 'oauth2'` settings (OAuth 2.0 client credentials, RFC 6749 §4.4)
 * in what the frozen WIT 0.1.0 has: the client id and secret as `basic` credentials, and the
 * rest as the policy's `oauth2` section. With that section the component sends the id and
 * secret only to the token endpoint, and the SCIM server sees `Authorization: Bearer …`.
 *
 * @internal
 */
final class OAuth2Settings
{
    /** The connector keys that belong to OAuth 2.0. */
    public const KEYS = [
        'token_url', 'client_id', 'client_secret', 'client_secret_env', 'scope', 'audience', 'resource', 'client_auth',
    ];
    /** The keys that travel in the policy's `oauth2` section; nothing secret. */
    private const POLICY_KEYS = ['token_url', 'scope', 'audience', 'resource', 'client_auth'];

    /**
     * The WIT `auth`, the policy JSON with its `oauth2` section, the secrets to redact, and
     * the token URL (whose origin the transport must allow).
     *
     * @param array<string, mixed> $config the connector's configuration, `auth` being `oauth2`
     * @param callable(string): ?string $fromEnv reads the variable a `*_env` key names
     * @return array{auth: array<string, mixed>, policy: string, secrets: list<string>, token_url: string}
     * @throws ProvisioningException `invalid-config` naming what is missing or wrong
     */
    public static function apply(array $config, string $policyJson, callable $fromEnv): array
    {
        foreach (['token', 'token_env', 'username', 'password', 'password_env'] as $key) {
            if (isset($config[$key])) {
                throw ProvisioningException::invalidConfig(
                    "auth 'oauth2' takes client_id and client_secret or client_secret_env, not {$key}"
                );
            }
        }
        $tokenUrl = $config['token_url'] ?? null;
        if (!is_string($tokenUrl) || trim($tokenUrl) === '') {
            throw ProvisioningException::invalidConfig("auth 'oauth2' needs token_url, the token endpoint");
        }
        $clientId = $config['client_id'] ?? null;
        if (!is_string($clientId) || $clientId === '') {
            throw ProvisioningException::invalidConfig("auth 'oauth2' needs client_id");
        }
        $secret = $fromEnv('client_secret_env') ?? $config['client_secret'] ?? null;
        if (!is_string($secret) || $secret === '') {
            throw ProvisioningException::invalidConfig("auth 'oauth2' needs client_secret or client_secret_env");
        }
        // Objects stay objects: an empty `{}` in the policy must not come back as `[]`.
        $policy = $policyJson === '' ? new \stdClass() : json_decode($policyJson, false);
        if (!$policy instanceof \stdClass) {
            throw ProvisioningException::invalidConfig('policy must be a JSON object');
        }
        if (property_exists($policy, 'oauth2')) {
            throw ProvisioningException::invalidConfig(
                "the policy's oauth2 section and auth 'oauth2' both set OAuth 2.0: "
                . 'keep the settings in the configuration'
            );
        }
        $section = [];
        foreach (self::POLICY_KEYS as $key) {
            if (isset($config[$key])) {
                if (!is_string($config[$key])) {
                    throw ProvisioningException::invalidConfig("{$key} must be a string");
                }
                $section[$key] = $config[$key];
            }
        }
        $policy->oauth2 = (object) $section;
        // RFC 6749 §2.3.1: form-encoded, then base64; the component sends it, the logs must not.
        $encoded = base64_encode(rawurlencode($clientId) . ':' . rawurlencode($secret));
        return [
            'auth' => ['tag' => 'basic', 'val' => ['username' => $clientId, 'password' => $secret]],
            'policy' => Json::encode($policy),
            'secrets' => [$secret, $encoded, base64_encode($clientId . ':' . $secret)],
            'token_url' => trim($tokenUrl),
        ];
    }
}
