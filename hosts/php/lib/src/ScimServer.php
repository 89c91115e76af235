<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\RedactingLogger;
use ScimProvisioner\Internal\Session;

/**
 * The server role (WIT `server.scim-server`): answers SCIM 2.0 requests for the CMS,
 * reading and writing through a {@see Directory} that PHP serves from its database.
 *
 * Configuration:
 *
 * ```php
 * [
 *     'base_url' => 'https://joomla.example/api/scim/v2', // absolute; for meta.location and Location
 *     'token' => '…',               // or 'token_env' => 'SCIM_TOKEN': the bearer token clients present
 *     'max_results' => 200,         // the most resources one list returns
 *     'bulk_max_operations' => 100, // the most operations one /Bulk request may hold
 *     'bulk_max_payload' => 1048576,// the largest request body accepted, in bytes
 *     'policy' => [...],            // the provisioning policy whose mapping, reversed, turns SCIM
 * ]                                 // users into CMS fields; empty for the Drupal-style default
 * ```
 *
 * {@see handle()} never fails for SCIM reasons (every error is a SCIM error response); it
 * throws {@see GuestTrapException} when the guest trapped, after which the next request is
 * served by a fresh instance.
 */
final class ScimServer extends Session
{
    public const INTERFACE = 'scim:provisioner/server@0.1.0';
    public const DIRECTORY = 'scim:provisioner/directory@0.1.0';
    private const KEYS = [
        'base_url', 'token', 'token_env', 'max_results', 'bulk_max_operations', 'bulk_max_payload', 'policy',
    ];

    /** @var array{base-url: string, bearer-token: string, max-results: int, bulk-max-operations: int, bulk-max-payload: int, policy-json: string} */
    private readonly array $witConfig;

    /**
     * @param array<string, mixed> $config
     */
    private function __construct(
        Runtime $runtime,
        array $config,
        private readonly Directory $directory,
        Logger|\Psr\Log\LoggerInterface|null $logger,
    ) {
        $witConfig = self::parseConfig($config);
        if ($directory instanceof PasswordHashingDirectory) {
            $witConfig['policy-json'] = self::declarePasswordHashing($witConfig['policy-json']);
        }
        $this->witConfig = $witConfig;
        $redacting = new RedactingLogger(PsrLoggerAdapter::wrap($logger), [$this->witConfig['bearer-token']]);
        parent::__construct($runtime, $redacting);
    }

    /**
     * Validates the configuration and opens a server.
     *
     * @param array{base_url: string, token?: string, token_env?: string, max_results?: int,
     *     bulk_max_operations?: int, bulk_max_payload?: int, policy?: array<string, mixed>|string} $config
     * @throws ProvisioningException `invalid-config`
     */
    public static function open(
        Runtime $runtime,
        array $config,
        Directory $directory,
        Logger|\Psr\Log\LoggerInterface|null $logger = null,
    ): self {
        $server = new self($runtime, $config, $directory, $logger);
        $server->ensureOpen();
        return $server;
    }

    /**
     * Answers one request.
     *
     * @throws GuestTrapException when the guest trapped (answer 500; the next request works)
     */
    public function handle(Request $request): Response
    {
        return Response::fromWit((array) $this->invoke('[method]scim-server.handle', [$request->toWit()]));
    }

    /**
     * Answers one PSR-7 request with a PSR-7 response built by the caller's PSR-17 factory:
     * what a Drupal controller (through its PSR-7 bridge), a Joomla API controller, a
     * Slim or Mezzio handler returns. The path is taken relative to $basePath (default:
     * the path of `base_url`); a request outside it gets a SCIM 404. Reads at most
     * {@see maxPayload()} + 1 bytes of the body.
     *
     * @param \Psr\Http\Message\StreamFactoryInterface|null $streamFactory for the body;
     *     default the response factory when it is one too (nyholm/psr7, guzzlehttp/psr7)
     * @throws GuestTrapException when the guest trapped (answer 500; the next request works)
     */
    public function handleServerRequest(
        \Psr\Http\Message\ServerRequestInterface $request,
        \Psr\Http\Message\ResponseFactoryInterface $responseFactory,
        ?\Psr\Http\Message\StreamFactoryInterface $streamFactory = null,
        ?string $basePath = null,
    ): \Psr\Http\Message\ResponseInterface {
        $basePath ??= (string) parse_url($this->witConfig['base-url'], PHP_URL_PATH);
        $scimRequest = Request::fromServerRequest($request, $basePath, $this->maxPayload());
        $answer = $scimRequest === null
            ? Response::error(404, 'not found: the SCIM API is under ' . ($basePath === '' ? '/' : $basePath))
            : $this->handle($scimRequest);
        return $answer->toPsrResponse($responseFactory, $streamFactory);
    }

    /** The largest request body the server accepts; read one byte more so it can answer 413. */
    public function maxPayload(): int
    {
        return $this->witConfig['bulk-max-payload'];
    }

    public function __debugInfo(): array
    {
        return ['baseUrl' => $this->witConfig['base-url'], 'maxResults' => $this->witConfig['max-results']];
    }

    protected function openRequest(): array
    {
        return [self::INTERFACE, '[static]scim-server.open', [$this->witConfig]];
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
        if ($interface === 'scim:provisioner/http-client@0.1.0') {
            return ['tag' => 'err', 'val' => ['tag' => 'denied', 'val' => 'the server role sends no HTTP requests']];
        }
        if ($interface !== self::DIRECTORY) {
            throw new BridgeException(
                "the component asked for an import the PHP host does not serve: {$interface}#{$func}"
            );
        }
        $kind = ResourceKind::tryFrom((string) ($args[0] ?? ''))
            ?? throw new BridgeException('the component asked the directory about an unknown resource kind');
        try {
            $value = match ($func) {
                'get' => $this->directory->get($kind, (string) $args[1])?->toWit(),
                'query' => $this->directory->query($kind, Search::fromWit((array) $args[1]))->toWit(),
                'create' => $this->directory->create(
                    $kind,
                    (string) $args[1],
                    isset($args[2]) ? CmsUser::fromWit($args[2]) : null,
                )->toWit(),
                'replace' => $this->directory->replace(
                    $kind,
                    (string) $args[1],
                    (string) $args[2],
                    isset($args[3]) ? CmsUser::fromWit($args[3]) : null,
                    isset($args[4]) ? (string) $args[4] : null,
                )->toWit(),
                'delete' => $this->directory->delete($kind, (string) $args[1]),
                default => throw new BridgeException("the component asked for an unknown directory function {$func}"),
            };
            return ['tag' => 'ok', 'val' => $value];
        } catch (DirectoryException $e) {
            return ['tag' => 'err', 'val' => $e->toWit()];
        } catch (BridgeException $e) {
            throw $e;
        } catch (\PDOException $e) {
            // The text (SQL, file paths) is for the log only: the component answers a plain
            // sentence with a reference and logs this text under it, once (issue 28).
            $error = new DirectoryException('unavailable', "the database failed in {$func}: " . $e->getMessage());
            return ['tag' => 'err', 'val' => $error->toWit()];
        } catch (\Throwable $e) {
            // A TypeError's message names files and lines: the log gets it, the client does not.
            $error = new DirectoryException('other', "{$func} failed: " . $e::class . ': ' . $e->getMessage());
            return ['tag' => 'err', 'val' => $error->toWit()];
        }
    }

    /**
     * The policy with `directory.hashes_passwords` set (unless it says otherwise), for a
     * {@see PasswordHashingDirectory}: the component then hands it the passwords clients set.
     */
    private static function declarePasswordHashing(string $policy): string
    {
        // Decoded as objects, so an empty object in the policy stays one.
        $value = trim($policy) === '' ? new \stdClass() : json_decode($policy);
        if (!$value instanceof \stdClass) {
            return $policy;   // not an object: the component reports it as invalid-config
        }
        $directory = $value->directory ?? new \stdClass();
        if (!$directory instanceof \stdClass || property_exists($directory, 'hashes_passwords')) {
            return $policy;
        }
        $directory->hashes_passwords = true;
        $value->directory = $directory;
        return (string) json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }

    /**
     * @param array<string, mixed> $config
     * @return array{base-url: string, bearer-token: string, max-results: int, bulk-max-operations: int,
     *     bulk-max-payload: int, policy-json: string}
     */
    private static function parseConfig(array $config): array
    {
        foreach (array_keys($config) as $key) {
            if (!in_array($key, self::KEYS, true)) {
                throw ProvisioningException::invalidConfig(
                    "unknown server setting '{$key}'; known: " . implode(', ', self::KEYS)
                );
            }
        }
        $baseUrl = $config['base_url'] ?? null;
        if (!is_string($baseUrl) || $baseUrl === '') {
            throw ProvisioningException::invalidConfig('base_url is required');
        }
        $token = $config['token'] ?? null;
        if (isset($config['token_env'])) {
            $token = getenv((string) $config['token_env']);
            if ($token === false || $token === '') {
                throw ProvisioningException::invalidConfig(
                    "environment variable {$config['token_env']} (token_env) is not set"
                );
            }
        }
        if (!is_string($token) || $token === '') {
            throw ProvisioningException::invalidConfig(
                'token or token_env is required: the bearer token clients must present'
            );
        }
        $int = static function (string $key, int $default, int $max) use ($config): int {
            $v = $config[$key] ?? $default;
            if (!is_int($v) || $v < 1 || $v > $max) {
                throw ProvisioningException::invalidConfig("{$key} must be a whole number from 1 to {$max}");
            }
            return $v;
        };
        $policy = $config['policy'] ?? '';
        if (is_array($policy)) {
            try {
                $policy = $policy === [] ? '' : json_encode($policy, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
            } catch (\JsonException $e) {
                throw ProvisioningException::invalidConfig('policy cannot be encoded as JSON: ' . $e->getMessage());
            }
        } elseif (!is_string($policy)) {
            throw ProvisioningException::invalidConfig('policy is an array or a JSON string');
        }
        return [
            'base-url' => $baseUrl,
            'bearer-token' => $token,
            'max-results' => $int('max_results', 200, 0xFFFFFFFF),
            'bulk-max-operations' => $int('bulk_max_operations', 100, 0xFFFFFFFF),
            'bulk-max-payload' => $int('bulk_max_payload', 1024 * 1024, PHP_INT_MAX),
            'policy-json' => $policy,
        ];
    }
}
