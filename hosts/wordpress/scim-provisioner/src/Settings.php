<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The client role's settings: one option, `scim_provisioner_client` (autoload no).
 *
 * Keys: base_url, auth (bearer|basic|oauth2), token, basic_user, basic_password, the OAuth 2.0
 * client credentials (token_url, client_id, client_secret, oauth2_scope, oauth2_audience,
 * client_auth), timeout_ms,
 * mapping (the component's mapping rules as JSON, '' for the default), operations
 * {create, update, deactivate, delete}, deprovision (deactivate|delete|none), scope_roles
 * (role slugs; empty = every user with a role), automatic (bool), schedule
 * (off|hourly|twicedaily|daily), deletion_threshold (int).
 *
 * Secrets (token, basic_password, client_secret) are write-only: {@see all()} never returns
 * them, only whether one is saved. They are kept encrypted with a key derived from the site's
 * AUTH salt (a database dump alone does not reveal them). When base_url's origin changes,
 * a save clears the saved token and password unless new ones come in the same save, and when
 * token_url's origin changes, the client secret (the component sends it only to token_url),
 * so a saved secret is never sent to an origin it was not entered for.
 */
final class Settings
{
    public const OPTION = 'scim_provisioner_client';
    public const SCHEDULES = ['off', 'hourly', 'twicedaily', 'daily'];
    public const DEPROVISION = ['deactivate', 'delete', 'none'];
    public const OPERATIONS = ['create', 'update', 'deactivate', 'delete'];
    private const SECRETS = ['token', 'basic_password', 'client_secret'];
    /** The secrets sent to the SCIM server itself (the client secret goes to token_url). */
    private const SCIM_SECRETS = ['token', 'basic_password'];
    public const AUTH = ['bearer', 'basic', 'oauth2'];
    public const CLIENT_AUTH = ['client_secret_basic', 'client_secret_post'];
    private const SECRET_PREFIX = 'enc:v1:';

    /** @var (\Closure(array<string, mixed>): ?string)|null has the component check a policy: an error or null */
    private ?\Closure $policyCheck;

    /** @param (\Closure(array<string, mixed>): ?string)|null $policyCheck */
    public function __construct(?\Closure $policyCheck = null)
    {
        $this->policyCheck = $policyCheck;
    }

    /** @return array<string, mixed> */
    public static function defaults(): array
    {
        return [
            'base_url' => '',
            'auth' => 'bearer',
            'token' => '',
            'basic_user' => '',
            'basic_password' => '',
            'token_url' => '',
            'client_id' => '',
            'client_secret' => '',
            'oauth2_scope' => '',
            'oauth2_audience' => '',
            'client_auth' => 'client_secret_basic',
            'timeout_ms' => 30000,
            'mapping' => '',
            'operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => false],
            'deprovision' => 'deactivate',
            'scope_roles' => [],
            'automatic' => true,
            'schedule' => 'daily',
            'deletion_threshold' => 10,
        ];
    }

    /**
     * The settings for display: secrets replaced by '' and `token_saved` /
     * `basic_password_saved` flags added.
     *
     * @return array<string, mixed>
     */
    public function all(): array
    {
        $stored = $this->stored();
        $out = $stored;
        foreach (self::SECRETS as $key) {
            $out[$key] = '';
            $out[$key . '_saved'] = ($stored[$key] ?? '') !== '';
        }
        return $out;
    }

    /** One non-secret setting. */
    public function get(string $key): mixed
    {
        if (in_array($key, self::SECRETS, true)) {
            throw new \InvalidArgumentException("{$key} is write-only");
        }
        return $this->stored()[$key] ?? null;
    }

    /** True once a base URL and the credentials its auth needs are saved. */
    public function isConfigured(): bool
    {
        $s = $this->stored();
        if ($s['base_url'] === '') {
            return false;
        }
        return match ($s['auth']) {
            'basic' => $s['basic_user'] !== '' && $s['basic_password'] !== '',
            'oauth2' => $s['token_url'] !== '' && $s['client_id'] !== '' && $s['client_secret'] !== '',
            default => $s['token'] !== '',
        };
    }

    /**
     * Validates and saves the keys present in $input (a tab saves only its own keys). Nothing
     * is saved when anything is wrong.
     *
     * @param array<string, mixed> $input
     * @return array<string, string> error messages by setting name; empty when saved
     */
    public function save(array $input): array
    {
        $old = $this->stored();
        $new = $old;
        $errors = [];
        foreach ($input as $key => $value) {
            if (!array_key_exists($key, self::defaults())) {
                $errors[(string) $key] = "unknown setting {$key}";
            }
        }
        if (array_key_exists('base_url', $input)) {
            $url = trim((string) $input['base_url']);
            $problem = $url === '' ? null : self::urlProblem($url);
            if ($problem !== null) {
                $errors['base_url'] = $problem;
            } else {
                $new['base_url'] = rtrim($url, '/');
            }
        }
        if (array_key_exists('auth', $input)) {
            if (!in_array($input['auth'], self::AUTH, true)) {
                $errors['auth'] = 'authentication is bearer, basic or oauth2';
            } else {
                $new['auth'] = $input['auth'];
            }
        }
        if (array_key_exists('basic_user', $input)) {
            $user = trim((string) $input['basic_user']);
            if (str_contains($user, ':')) {
                $errors['basic_user'] = 'a basic-auth user name cannot contain a colon';
            } else {
                $new['basic_user'] = $user;
            }
        }
        if (array_key_exists('token_url', $input)) {
            $url = trim((string) $input['token_url']);
            $problem = $url === '' ? null : self::urlProblem($url, 'token URL');
            if ($problem !== null) {
                $errors['token_url'] = $problem;
            } else {
                $new['token_url'] = $url;
            }
        }
        foreach (['client_id', 'oauth2_scope', 'oauth2_audience'] as $key) {
            if (array_key_exists($key, $input)) {
                $new[$key] = trim(sanitize_text_field((string) $input[$key]));
            }
        }
        if (array_key_exists('client_auth', $input)) {
            if (!in_array($input['client_auth'], self::CLIENT_AUTH, true)) {
                $errors['client_auth'] = 'client authentication is client_secret_basic or client_secret_post';
            } else {
                $new['client_auth'] = $input['client_auth'];
            }
        }
        // Secrets: an empty field keeps the saved one (the form never shows it).
        $given = [];
        foreach (self::SECRETS as $key) {
            if (isset($input[$key]) && is_string($input[$key]) && trim($input[$key]) !== '') {
                $given[$key] = true;
                $new[$key] = trim($input[$key]);
            }
        }
        if (self::origin($old['base_url']) !== self::origin($new['base_url'])) {
            foreach (self::SCIM_SECRETS as $key) {
                if (!isset($given[$key])) {
                    $new[$key] = '';
                }
            }
        }
        if (self::origin($old['token_url']) !== self::origin($new['token_url']) && !isset($given['client_secret'])) {
            $new['client_secret'] = '';
        }
        if (array_key_exists('timeout_ms', $input)) {
            $t = filter_var($input['timeout_ms'], FILTER_VALIDATE_INT);
            if ($t === false || $t < 1000 || $t > 600000) {
                $errors['timeout_ms'] = 'the timeout is a whole number of milliseconds from 1000 to 600000';
            } else {
                $new['timeout_ms'] = $t;
            }
        }
        if (array_key_exists('operations', $input)) {
            $ops = is_array($input['operations']) ? $input['operations'] : [];
            foreach (self::OPERATIONS as $op) {
                $new['operations'][$op] = !empty($ops[$op]) && $ops[$op] !== '0' && $ops[$op] !== 'false';
            }
        }
        if (array_key_exists('deprovision', $input)) {
            if (!in_array($input['deprovision'], self::DEPROVISION, true)) {
                $errors['deprovision'] = 'deprovisioning is deactivate, delete or none';
            } else {
                $new['deprovision'] = $input['deprovision'];
            }
        }
        if (array_key_exists('scope_roles', $input)) {
            $roles = is_array($input['scope_roles'])
                ? array_values(array_unique(array_map('strval', $input['scope_roles'])))
                : [];
            $known = function_exists('wp_roles') ? array_keys(wp_roles()->roles) : $roles;
            $unknown = array_diff($roles, $known);
            if ($unknown !== []) {
                $errors['scope_roles'] = 'unknown role: ' . implode(', ', $unknown);
            } else {
                $new['scope_roles'] = $roles;
            }
        }
        if (array_key_exists('automatic', $input)) {
            $new['automatic'] = filter_var($input['automatic'], FILTER_VALIDATE_BOOLEAN);
        }
        if (array_key_exists('schedule', $input)) {
            if (!in_array($input['schedule'], self::SCHEDULES, true)) {
                $errors['schedule'] = 'the schedule is off, hourly, twicedaily or daily';
            } else {
                $new['schedule'] = $input['schedule'];
            }
        }
        if (array_key_exists('deletion_threshold', $input)) {
            $n = filter_var($input['deletion_threshold'], FILTER_VALIDATE_INT);
            if ($n === false || $n < 0) {
                $errors['deletion_threshold'] = 'the deletion threshold is a whole number of users, 0 or more';
            } else {
                $new['deletion_threshold'] = $n;
            }
        }
        if (array_key_exists('mapping', $input)) {
            $text = trim((string) $input['mapping']);
            $problem = $text === '' ? null : $this->mappingProblem($text, $new);
            if ($problem !== null) {
                $errors['mapping'] = $problem;
            } else {
                $new['mapping'] = $text;
            }
        }
        if ($errors !== []) {
            return $errors;
        }
        $this->write($new);
        return [];
    }

    /**
     * The configuration {@see \ScimProvisioner\Connector::open()} takes.
     *
     * @return array<string, mixed>
     * @throws \RuntimeException when no base URL or credentials are saved
     */
    public function connectorConfig(): array
    {
        $s = $this->stored();
        if ($s['base_url'] === '') {
            throw new \RuntimeException(
                'no SCIM server is configured: set the base URL under Settings → SCIM Provisioning'
            );
        }
        $config = ['base_url' => $s['base_url'], 'timeout' => (int) $s['timeout_ms'], 'policy' => $this->policy($s)];
        if ($s['auth'] === 'oauth2') {
            if ($s['token_url'] === '' || $s['client_id'] === '' || $s['client_secret'] === '') {
                throw new \RuntimeException('OAuth 2.0 client credentials need a token URL, a client id and a client '
                    . 'secret: enter them under Settings → SCIM Provisioning');
            }
            // The component sends the id and secret only to token_url; the SCIM server gets the token.
            $config += ['auth' => 'oauth2', 'token_url' => $s['token_url'], 'client_id' => $s['client_id'],
                'client_secret' => $s['client_secret'], 'client_auth' => $s['client_auth']];
            if ($s['oauth2_scope'] !== '') {
                $config['scope'] = $s['oauth2_scope'];
            }
            if ($s['oauth2_audience'] !== '') {
                $config['audience'] = $s['oauth2_audience'];
            }
        } elseif ($s['auth'] === 'basic') {
            if ($s['basic_user'] === '' || $s['basic_password'] === '') {
                throw new \RuntimeException('basic authentication needs a user name and a password: '
                    . 'enter them under Settings → SCIM Provisioning');
            }
            $config['username'] = $s['basic_user'];
            $config['password'] = $s['basic_password'];
        } else {
            if ($s['token'] === '') {
                throw new \RuntimeException('no bearer token is saved for this SCIM server: '
                    . 'enter it under Settings → SCIM Provisioning');
            }
            $config['token'] = $s['token'];
        }
        return $config;
    }

    /**
     * The provisioning policy the component gets: operations, deprovision, mapping, scope.
     *
     * A WordPress user with no role on the site is inactive (WordPress has no "blocked"
     * flag): the scope requires a role (`has_role`), so such a user leaves the scope and the
     * configured deprovision action applies; `deprovision = none` disables both
     * deactivate and delete.
     *
     * @param array<string, mixed>|null $settings
     * @return array<string, mixed>
     */
    public function policy(?array $settings = null): array
    {
        $s = $settings ?? $this->stored();
        $ops = $s['operations'];
        if ($s['deprovision'] === 'none') {
            $ops['deactivate'] = false;
            $ops['delete'] = false;
        }
        $scope = $s['scope_roles'] === []
            ? ['field' => UserFields::HAS_ROLE, 'equals' => true]
            : ['field' => 'roles', 'any_of' => array_values($s['scope_roles'])];
        return [
            'operations' => $ops,
            'deprovision' => $s['deprovision'] === 'delete' ? 'delete' : 'deactivate',
            'matching' => ['userName', 'externalId', 'emails[type eq "work"].value'],
            'mapping' => $this->mappingRules($s),
            'scope' => $scope,
        ];
    }

    /**
     * The mapping rules in force: the saved ones, or {@see defaultMapping()}.
     *
     * @param array<string, mixed>|null $settings
     * @return list<array<string, mixed>>
     */
    public function mappingRules(?array $settings = null): array
    {
        $text = ($settings ?? $this->stored())['mapping'];
        if ($text !== '') {
            $rules = json_decode($text, true);
            if (is_array($rules) && array_is_list($rules)) {
                return $rules;
            }
        }
        return self::defaultMapping();
    }

    /**
     * WordPress's fields in the component's mapping rules.
     *
     * @return list<array<string, mixed>>
     */
    public static function defaultMapping(): array
    {
        return [
            ['target' => 'userName', 'source' => 'user_login', 'required' => true],
            ['target' => 'emails[type eq "work"].value', 'source' => 'user_email', 'transform' => ['trim', 'lower']],
            ['target' => 'name.givenName', 'source' => 'first_name'],
            ['target' => 'name.familyName', 'source' => 'last_name'],
            ['target' => 'name.formatted', 'template' => '{first_name} {last_name}', 'transform' => ['trim']],
            ['target' => 'displayName', 'source' => 'display_name'],
            ['target' => 'nickName', 'source' => 'nickname'],
            ['target' => 'roles', 'source' => 'roles'],
            ['target' => 'active', 'source' => '@active'],
            ['target' => 'externalId', 'source' => '@id'],
        ];
    }

    /** The policy as JSON, for fingerprints: a changed policy makes every user "changed". */
    public function policyJson(): string
    {
        return (string) wp_json_encode($this->policy());
    }

    /** scheme://host:port of a URL, '' for none. */
    public static function origin(string $url): string
    {
        if ($url === '') {
            return '';
        }
        $p = parse_url($url);
        if (!is_array($p) || !isset($p['scheme'], $p['host'])) {
            return '';
        }
        $scheme = strtolower($p['scheme']);
        $port = $p['port'] ?? ($scheme === 'https' ? 443 : 80);
        return $scheme . '://' . strtolower($p['host']) . ':' . $port;
    }

    private static function urlProblem(string $url, string $what = 'base URL'): ?string
    {
        $p = parse_url($url);
        if (!is_array($p) || !isset($p['scheme'], $p['host'])) {
            return "the {$what} must be an absolute http:// or https:// URL";
        }
        if (!in_array(strtolower($p['scheme']), ['http', 'https'], true)) {
            return "the {$what} must start with http:// or https://";
        }
        if (isset($p['user']) || isset($p['pass'])) {
            return 'put credentials in the token, basic-auth or client fields, not in the URL';
        }
        if (isset($p['query']) || isset($p['fragment'])) {
            return "the {$what} cannot have a query or a fragment";
        }
        return null;
    }

    /** @param array<string, mixed> $settings the settings being saved */
    private function mappingProblem(string $text, array $settings): ?string
    {
        $rules = json_decode($text, true);
        if (!is_array($rules) || !array_is_list($rules)) {
            $why = json_last_error() !== JSON_ERROR_NONE ? json_last_error_msg() : 'not an array';
            return "the mapping is a JSON array of rules ({$why})";
        }
        if ($this->policyCheck === null) {
            return null;
        }
        $settings['mapping'] = $text;
        return ($this->policyCheck)($this->policy($settings));
    }

    /** @return array<string, mixed> the stored settings over the defaults, secrets decrypted */
    private function stored(): array
    {
        $raw = get_option(self::OPTION, []);
        $s = array_replace(self::defaults(), is_array($raw) ? array_intersect_key($raw, self::defaults()) : []);
        $ops = is_array($s['operations']) ? $s['operations'] : [];
        $s['operations'] = array_replace(self::defaults()['operations'], $ops);
        $s['scope_roles'] = is_array($s['scope_roles']) ? array_values(array_map('strval', $s['scope_roles'])) : [];
        foreach (self::SECRETS as $key) {
            $s[$key] = self::decrypt((string) $s[$key]);
        }
        foreach (
            ['base_url', 'auth', 'basic_user', 'mapping', 'deprovision', 'schedule', 'token_url', 'client_id',
            'oauth2_scope', 'oauth2_audience', 'client_auth'] as $key
        ) {
            $s[$key] = (string) $s[$key];
        }
        $s['automatic'] = (bool) $s['automatic'];
        $s['timeout_ms'] = (int) $s['timeout_ms'];
        $s['deletion_threshold'] = (int) $s['deletion_threshold'];
        return $s;
    }

    /** @param array<string, mixed> $settings */
    private function write(array $settings): void
    {
        foreach (self::SECRETS as $key) {
            $settings[$key] = $settings[$key] === '' ? '' : self::encrypt($settings[$key]);
        }
        if (get_option(self::OPTION, null) === null) {
            add_option(self::OPTION, $settings, '', 'no');
        } else {
            update_option(self::OPTION, $settings, false);
        }
    }

    private static function key(): string
    {
        $material = 'scim-provisioner secrets|' . wp_salt('auth');
        return sodium_crypto_generichash($material, '', SODIUM_CRYPTO_SECRETBOX_KEYBYTES);
    }

    private static function encrypt(string $plain): string
    {
        $nonce = random_bytes(SODIUM_CRYPTO_SECRETBOX_NONCEBYTES);
        return self::SECRET_PREFIX . base64_encode($nonce . sodium_crypto_secretbox($plain, $nonce, self::key()));
    }

    /** '' when the value cannot be read (the salts changed): the admin enters the secret again. */
    private static function decrypt(string $stored): string
    {
        if ($stored === '' || !str_starts_with($stored, self::SECRET_PREFIX)) {
            return '';
        }
        $raw = base64_decode(substr($stored, strlen(self::SECRET_PREFIX)), true);
        if ($raw === false || strlen($raw) <= SODIUM_CRYPTO_SECRETBOX_NONCEBYTES) {
            return '';
        }
        $nonce = substr($raw, 0, SODIUM_CRYPTO_SECRETBOX_NONCEBYTES);
        $plain = sodium_crypto_secretbox_open(substr($raw, SODIUM_CRYPTO_SECRETBOX_NONCEBYTES), $nonce, self::key());
        return $plain === false ? '' : $plain;
    }
}
