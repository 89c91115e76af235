<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\Call;
use ScimProvisioner\Internal\Json;
use ScimProvisioner\Internal\OAuth2Settings;
use ScimProvisioner\Internal\RedactingLogger;
use ScimProvisioner\Internal\Session;

/**
 * The client role: one open connection to one SCIM server under one provisioning policy
 * (WIT `client.connector`), in its own component instance. The component makes every
 * provisioning decision; this object carries its HTTP requests out through a
 * {@see Transport} and hands back typed results.
 *
 * The configuration is the same JSON shape the Rust host uses:
 *
 * ```php
 * [
 *     'base_url' => 'https://joomla.example/api/scim/v2',
 *     'token' => '…',                  // or 'token_env' => 'SCIM_TOKEN'
 *     // or 'username' => 'svc', 'password' => '…' (or 'password_env'): HTTP basic
 *     // or 'auth' => 'oauth2', 'token_url' => 'https://idp.example/oauth2/token',
 *     //    'client_id' => '…', 'client_secret' => '…' (or 'client_secret_env'), and optionally
 *     //    'scope', 'audience', 'resource', 'client_auth' ('client_secret_basic' or
 *     //    'client_secret_post'): OAuth 2.0 client credentials; the component gets the token
 *     'timeout' => 30000,              // per request, milliseconds (1 to 600000)
 *     'policy' => [                    // the provisioning policy: operations, mapping,
 *         'operations' => ['delete' => true],   // matching, deprovision, scope, groups_from…
 *         'deprovision' => 'delete',            // (a JSON string is accepted too)
 *     ],
 * ]
 * ```
 *
 * Errors: {@see ProvisioningException} for what the component reports (with case, status,
 * scimType, retry class); {@see GuestTrapException} when the guest trapped, after which the
 * next call re-opens a fresh instance with the stored configuration; {@see BridgeException}
 * for bridge failures. The token and password never appear in logs, errors or var_dump().
 *
 * @phpstan-type ConnectorConfigArray array{base_url: string, token?: string, token_env?: string,
 *     username?: string, password?: string, password_env?: string, timeout?: int, policy?: array<string, mixed>|string,
 *     auth?: string, token_url?: string, client_id?: string, client_secret?: string, client_secret_env?: string,
 *     scope?: string, audience?: string, resource?: string, client_auth?: string}
 */
final class Connector extends Session
{
    public const INTERFACE = 'scim:provisioner/client@0.1.0';
    private const HTTP = 'scim:provisioner/http-client@0.1.0';
    private const KEYS = [
        'base_url', 'token', 'token_env', 'username', 'password', 'password_env', 'timeout', 'policy', 'auth',
        ...OAuth2Settings::KEYS,
    ];
    /** How `scope-fields` names the user's id. */
    private const SCOPE_ID_FIELD = '@id';

    /** @var array{base-url: string, auth: array<string, mixed>, timeout-ms: int, policy-json: string} */
    private readonly array $witConfig;
    public readonly string $baseUrl;
    public readonly Transport $transport;
    /** @var list<string> what `plan` reads (WIT `connector.scope-fields`), asked once per instance */
    private array $scopeFields = [];
    /** @var array<array-key, int> the same names as keys, for cutting a user without a loop in PHP */
    private array $scopeKeys = [];
    private bool $scopeReadsId = false;

    /**
     * @param array<string, mixed> $config
     */
    private function __construct(
        Runtime $runtime,
        array $config,
        ?Transport $transport,
        Logger|\Psr\Log\LoggerInterface|null $logger,
    ) {
        [$wit, $secrets, $tokenUrl] = self::parseConfig($config);
        parent::__construct($runtime, new RedactingLogger(PsrLoggerAdapter::wrap($logger), $secrets));
        $this->witConfig = $wit;
        $this->baseUrl = $wit['base-url'];
        $this->transport = $transport ?? new CurlTransport(
            $wit['base-url'],
            $tokenUrl === null ? [] : ['token_url' => $tokenUrl],
            $this->logger,
        );
    }

    /**
     * Validates the configuration and opens a connector (WIT `connector.open`). Sends nothing.
     *
     * @param array{base_url: string, token?: string, token_env?: string, username?: string, password?: string,
     *     password_env?: string, timeout?: int, policy?: array<string, mixed>|string} $config
     * @param Transport|null $transport the HTTP client; default a {@see CurlTransport} bound to base_url's origin
     *     (and token_url's, with 'auth' 'oauth2'; a transport of your own must allow it too)
     * @param Logger|\Psr\Log\LoggerInterface|null $logger where log lines go, secrets redacted first
     * @throws ProvisioningException `invalid-config` when the configuration or policy is not valid
     */
    public static function open(
        Runtime $runtime,
        array $config,
        ?Transport $transport = null,
        Logger|\Psr\Log\LoggerInterface|null $logger = null,
    ): self {
        $connector = new self($runtime, $config, $transport, $logger);
        $connector->ensureOpen();
        return $connector;
    }

    /** "Save and Test Credentials": what the server supports, or why it cannot be used. */
    public function testConnection(): ServerCapabilities
    {
        return ServerCapabilities::fromWit($this->ok($this->invoke('[method]connector.test-connection', [])));
    }

    /**
     * Brings the remote user in line with one CMS user after `event`. Store the outcome's
     * link (or drop yours when it is null) and pass it next time.
     */
    public function provision(CmsUser $user, UserEvent|string $event, ?Link $link = null): ProvisionOutcome
    {
        return $this->endProvision($this->beginProvision($user, $event, $link));
    }

    /**
     * Provisions several users at once; their writes share `/Bulk` requests where the server
     * has it. Pass each user at most once. Each user gets its own result.
     *
     * @param list<BatchItem> $items
     */
    public function provisionBatch(array $items): BatchOutcome
    {
        return $this->endProvisionBatch($this->beginProvisionBatch($items));
    }

    /**
     * What `provision` would do, decided without sending anything. Only what the scope reads
     * crosses into the component ({@see scopeFields()}): `plan` reads no other field, and each
     * field passed costs a conversion, JSON encoding and a copy into the guest.
     */
    public function plan(CmsUser $user, UserEvent|string $event, bool $linked): Plan
    {
        $event = UserEvent::of($event)->value;
        // The cut follows the list of the instance that runs the call: after a trap, that is
        // the fresh one, so open it first.
        $this->ensureOpen();
        $only = $user->toWitOnly($this->scopeKeys, $this->scopeReadsId);
        $result = $this->invoke('[method]connector.plan', [$only, $event, $linked]);
        return Plan::fromWit((array) $result);
    }

    /**
     * What {@see plan()} reads of a user besides its active flag (WIT `connector.scope-fields`):
     * the names of the CMS fields the provisioning scope reads, each once, and `@id` when it
     * reads the user's id; empty without a scope. Fixed for the connector's lifetime; asked
     * once per instance, right after open. No request.
     *
     * @return list<string>
     */
    public function scopeFields(): array
    {
        $this->ensureOpen();
        return $this->scopeFields;
    }

    /** Lists the remote users once (paged), so a first sync matches locally. */
    public function indexRemoteUsers(): RemoteListing
    {
        return RemoteListing::fromWit($this->ok($this->invoke('[method]connector.index-remote-users', [])));
    }

    /** The listed remote users as a document for {@see importRemoteIndex()} on other connectors; null when nothing was listed. */
    public function exportRemoteIndex(): ?string
    {
        $doc = $this->invoke('[method]connector.export-remote-index', []);
        return $doc === null ? null : (string) $doc;
    }

    /** Loads another connector's listing (same server, same matching attributes); returns how many users it holds. */
    public function importRemoteIndex(string $document): int
    {
        return (int) $this->ok($this->invoke('[method]connector.import-remote-index', [$document]));
    }

    /** What the connector learned about the server (an opaque JSON document to keep with the connection). */
    public function exportDialect(): string
    {
        return (string) $this->invoke('[method]connector.export-dialect', []);
    }

    /** Loads a document from {@see exportDialect()}; a malformed one is refused with invalid-config. */
    public function importDialect(string $document): void
    {
        $this->ok($this->invoke('[method]connector.import-dialect', [$document]));
    }

    /**
     * The SCIM ids of the remote users {@see indexRemoteUsers()} listed (or {@see importRemoteIndex()}
     * loaded), in the order the server listed them; empty when nothing was listed. No request.
     *
     * @return list<string>
     */
    public function remoteUserIds(): array
    {
        return array_map('strval', (array) $this->invoke('[method]connector.remote-user-ids', []));
    }

    /**
     * Reads one remote user by its SCIM id; null on 404.
     *
     * @return array<string, mixed>|null
     */
    public function getUser(string $remoteId): ?array
    {
        $json = $this->ok($this->invoke('[method]connector.get-user', [$remoteId]));
        return $json === null ? null : Json::decodeObject((string) $json, 'the remote user');
    }

    /**
     * The SCIM resource a CMS user maps to. Sends nothing.
     *
     * @return array<string, mixed>
     */
    public function mapUser(CmsUser $user): array
    {
        $mapped = $this->ok($this->invoke('[method]connector.map-user', [$user->toWit()]));
        return Json::decodeObject((string) $mapped, 'the mapped user');
    }

    /** @internal for {@see Concurrent} */
    public function beginProvision(CmsUser $user, UserEvent|string $event, ?Link $link): Call
    {
        return $this->begin(
            '[method]connector.provision',
            [$user->toWit(), UserEvent::of($event)->value, $link?->toWit()],
        );
    }

    /** @internal for {@see Concurrent} */
    public function endProvision(Call $call): ProvisionOutcome
    {
        return ProvisionOutcome::fromWit($this->ok($this->run($call)));
    }

    /**
     * @param list<BatchItem> $items
     * @internal for {@see Concurrent}
     */
    public function beginProvisionBatch(array $items): Call
    {
        $wit = [];
        foreach ($items as $i => $item) {
            if (!$item instanceof BatchItem) {
                throw new InvalidArgumentException("item {$i} is not a BatchItem but " . get_debug_type($item));
            }
            $wit[] = $item->toWit();
        }
        return $this->begin('[method]connector.provision-batch', [$wit]);
    }

    /** @internal for {@see Concurrent} */
    public function endProvisionBatch(Call $call): BatchOutcome
    {
        return BatchOutcome::fromWit((array) $this->run($call));
    }

    /**
     * @internal Serves a finished HTTP exchange into the call (for {@see Concurrent}).
     */
    public function resumeHttp(Call $call, HttpResponse|TransportException $answer): void
    {
        try {
            $call->resume(self::httpResult($answer));
        } catch (\Throwable $e) {
            $this->discard();
            throw $e;
        }
    }

    /** Never shows credentials. */
    public function __debugInfo(): array
    {
        return [
            'baseUrl' => $this->baseUrl,
            'auth' => $this->witConfig['auth']['tag'],
            'timeoutMs' => $this->witConfig['timeout-ms'],
        ];
    }

    protected function openRequest(): array
    {
        return [self::INTERFACE, '[static]connector.open', [$this->witConfig]];
    }

    protected function opened(): void
    {
        $fields = array_map('strval', (array) $this->invoke('[method]connector.scope-fields', []));
        $this->scopeFields = $fields;
        $this->scopeKeys = array_flip($fields);
        $this->scopeReadsId = in_array(self::SCOPE_ID_FIELD, $fields, true);
    }

    protected function openError(mixed $error): \Throwable
    {
        return ProvisioningException::fromWit((array) $error);
    }

    protected function exportInterface(): string
    {
        return self::INTERFACE;
    }

    protected function serveImport(string $interface, string $func, array $args): mixed
    {
        if ($interface === self::HTTP && $func === 'send') {
            $request = HttpRequest::fromWit((array) ($args[0] ?? []));
            try {
                return self::httpResult($this->transport->send($request));
            } catch (TransportException $e) {
                return self::httpResult($e);
            } catch (\Throwable $e) {
                // A transport bug must not leave the call hanging: the guest gets `other`.
                $this->logger->error('the transport failed: {error}', ['error' => $e::class . ': ' . $e->getMessage()]);
                return self::httpResult(
                    new TransportException('other', 'the host transport failed: ' . $e->getMessage())
                );
            }
        }
        if ($interface === ScimServer::DIRECTORY) {
            $error = new DirectoryException('unavailable', 'a connector has no directory');
            return ['tag' => 'err', 'val' => $error->toWit()];
        }
        throw new BridgeException(
            "the component asked for an import the PHP host does not serve: {$interface}#{$func}"
        );
    }

    /** @return array{tag: string, val: array<string, mixed>} */
    private static function httpResult(HttpResponse|TransportException $answer): array
    {
        return $answer instanceof HttpResponse
            ? ['tag' => 'ok', 'val' => $answer->toWit()]
            : ['tag' => 'err', 'val' => $answer->toWit()];
    }

    /**
     * The ok value of a WIT result, or its error thrown.
     *
     * @throws ProvisioningException
     */
    private function ok(mixed $result): mixed
    {
        if (!is_array($result) || !isset($result['tag'])) {
            throw new BridgeException('the component returned a malformed result');
        }
        if ($result['tag'] === 'ok') {
            return $result['val'] ?? null;
        }
        throw ProvisioningException::fromWit((array) ($result['val'] ?? []));
    }

    /**
     * The WIT `connector-config` and the secrets to redact.
     *
     * @param array<string, mixed> $config
     * @return array{0: array{base-url: string, auth: array<string, mixed>, timeout-ms: int, policy-json: string},
     *     1: list<string>, 2: ?string}
     */
    private static function parseConfig(array $config): array
    {
        foreach (array_keys($config) as $key) {
            if (!in_array($key, self::KEYS, true)) {
                throw ProvisioningException::invalidConfig(
                    "unknown setting '{$key}'; known: " . implode(', ', self::KEYS)
                );
            }
        }
        $baseUrl = $config['base_url'] ?? null;
        if (!is_string($baseUrl) || $baseUrl === '') {
            throw ProvisioningException::invalidConfig('base_url is required');
        }
        $fromEnv = static function (string $key) use ($config): ?string {
            if (!isset($config[$key])) {
                return null;
            }
            $value = getenv((string) $config[$key]);
            if ($value === false || $value === '') {
                throw ProvisioningException::invalidConfig("environment variable {$config[$key]} ({$key}) is not set");
            }
            return $value;
        };
        $secrets = [];
        $authKind = $config['auth'] ?? null;
        if ($authKind !== null && $authKind !== 'oauth2') {
            throw ProvisioningException::invalidConfig("auth is 'oauth2' or left out (a token, basic or none)");
        }
        if ($authKind === null) {
            foreach (OAuth2Settings::KEYS as $key) {
                if (isset($config[$key])) {
                    throw ProvisioningException::invalidConfig(
                        "{$key} is an OAuth 2.0 setting: set 'auth' => 'oauth2' too"
                    );
                }
            }
        }
        if ($authKind === 'oauth2') {
            $auth = null; // resolved after the policy, which takes the non-secret settings
        } elseif (isset($config['username'])) {
            $password = $fromEnv('password_env') ?? $config['password'] ?? null;
            if (!is_string($password) || $password === '') {
                throw ProvisioningException::invalidConfig('basic authentication needs password or password_env');
            }
            $auth = ['tag' => 'basic', 'val' => ['username' => (string) $config['username'], 'password' => $password]];
            $secrets = [$password, base64_encode($config['username'] . ':' . $password)];
        } elseif (($token = $fromEnv('token_env') ?? $config['token'] ?? null) !== null) {
            if (!is_string($token) || $token === '') {
                throw ProvisioningException::invalidConfig('token must be a non-empty string');
            }
            $auth = ['tag' => 'bearer', 'val' => $token];
            $secrets = [$token];
        } else {
            $auth = ['tag' => 'none'];
        }
        $timeout = $config['timeout'] ?? 30000;
        if (!is_int($timeout) || $timeout < 0 || $timeout > 0xFFFFFFFF) {
            throw ProvisioningException::invalidConfig('timeout is a whole number of milliseconds (1 to 600000)');
        }
        $policy = $config['policy'] ?? '';
        if (is_array($policy)) {
            $policy = $policy === [] ? '' : Json::encode($policy);
        } elseif (!is_string($policy)) {
            throw ProvisioningException::invalidConfig('policy is an array or a JSON string');
        }
        $tokenUrl = null;
        if ($authKind === 'oauth2') {
            $oauth2 = OAuth2Settings::apply($config, $policy, $fromEnv);
            [$auth, $policy, $secrets, $tokenUrl] =
                [$oauth2['auth'], $oauth2['policy'], $oauth2['secrets'], $oauth2['token_url']];
        }
        return [
            [
                'base-url' => $baseUrl,
                'auth' => $auth ?? ['tag' => 'none'],
                'timeout-ms' => $timeout,
                'policy-json' => $policy,
            ],
            $secrets,
            $tokenUrl,
        ];
    }
}
