<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\BridgeException;
use ScimProvisioner\CmsUser;
use ScimProvisioner\DeadlineExceededException;
use ScimProvisioner\DirectoryErrorCase;
use ScimProvisioner\DirectoryException;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\Internal\RedactingLogger;
use ScimProvisioner\InvalidArgumentException;
use ScimProvisioner\LogicException;
use ScimProvisioner\MemoryLimitException;
use ScimProvisioner\ProvisioningErrorCase;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\PsrLoggerAdapter;
use ScimProvisioner\RetryClass;
use ScimProvisioner\Runtime;
use ScimProvisioner\ScimProvisionerException;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\TransportErrorCase;
use ScimProvisioner\TransportException;
use ScimProvisioner\TrapKind;
use ScimProvisioner\UserEvent;
use ScimProvisioner\Tests\Support\CollectingPsrLogger;
use ScimProvisioner\Tests\Support\Peers;

/**
 * The one marker interface, the backed enums against the WIT contract itself, and PSR-3
 * loggers with secrets redacted before a line reaches them.
 */
final class ErrorsAndLoggingTest extends TestCase
{
    /** The case names of a WIT variant, read from the contract in wit/. */
    private static function witCases(string $file, string $variant): array
    {
        $text = (string) file_get_contents(dirname(__DIR__, 3) . "/wit/{$file}");
        if (!preg_match('/variant ' . preg_quote($variant, '/') . ' \{(.*?)\n\s*\}/s', $text, $m)) {
            throw new \RuntimeException("variant {$variant} not found in wit/{$file}");
        }
        $cases = [];
        foreach (explode("\n", $m[1]) as $line) {
            if (preg_match('/^\s*([a-z][a-z0-9-]*)\s*(\(|,)/', $line, $c)) {
                $cases[] = $c[1];
            }
        }
        return $cases;
    }

    /** @param class-string<\BackedEnum> $enum */
    private static function values(string $enum): array
    {
        return array_map(static fn (\BackedEnum $c): string|int => $c->value, $enum::cases());
    }

    public function testTheEnumsKeepTheWitNames(): void
    {
        $this->assertSame(self::witCases('types.wit', 'provisioning-error'), self::values(ProvisioningErrorCase::class));
        $this->assertSame(self::witCases('types.wit', 'retry-class'), self::values(RetryClass::class));
        $this->assertSame(self::witCases('http.wit', 'transport-error'), self::values(TransportErrorCase::class));
        $this->assertSame(self::witCases('directory.wit', 'directory-error'), self::values(DirectoryErrorCase::class));
        $this->assertSame(ProvisioningException::CASES, self::values(ProvisioningErrorCase::class));
        $this->assertSame(TransportException::CASES, self::values(TransportErrorCase::class));
        $this->assertSame(DirectoryException::CASES, self::values(DirectoryErrorCase::class));
    }

    public function testExceptionsCarryTheirCasesAsEnumsAndStrings(): void
    {
        $e = ProvisioningException::fromWit(['tag' => 'scim', 'val' => ['status' => 503, 'retry' => ['tag' => 'after-seconds', 'val' => 30]]]);
        $this->assertSame(ProvisioningErrorCase::Scim, $e->errorCase());
        $this->assertSame('scim', $e->case);
        $this->assertSame(RetryClass::AfterSeconds, $e->retryClass());
        $this->assertSame(30, $e->retryAfterSeconds);
        $this->assertTrue($e->retryClass()->isRetryable());
        $this->assertSame(RetryClass::Permanent, ProvisioningException::invalidConfig('x')->retryClass());
        $this->assertFalse(RetryClass::Permanent->isRetryable());

        $t = new TransportException(TransportErrorCase::CannotConnect, 'refused');
        $this->assertSame('cannot-connect', $t->case);
        $this->assertSame(['tag' => 'cannot-connect', 'val' => 'refused'], $t->toWit());
        $this->assertSame(TransportErrorCase::Timeout, (new TransportException('timeout'))->errorCase());

        $d = new DirectoryException(DirectoryErrorCase::Conflict, 'userName taken');
        $this->assertSame(['tag' => 'conflict', 'val' => 'userName taken'], $d->toWit());
        $this->assertSame(409, $d->errorCase()->httpStatus());
        $this->assertSame(TrapKind::Memory, GuestTrapException::of('memory', 'm')->trapKind());
    }

    public function testEverythingTheLibraryThrowsImplementsTheMarker(): void
    {
        $thrown = [
            ProvisioningException::invalidConfig('x'),
            new TransportException('other', 'x'),
            new DirectoryException('not-found'),
            new BridgeException('x'),
            GuestTrapException::of('trap', 'x'),
            GuestTrapException::of('deadline', 'x'),
            GuestTrapException::of('memory', 'x'),
            new InvalidArgumentException('x'),
            new LogicException('x'),
        ];
        foreach ($thrown as $e) {
            $this->assertInstanceOf(ScimProvisionerException::class, $e, $e::class);
        }
        $this->assertInstanceOf(DeadlineExceededException::class, $thrown[5]);
        $this->assertInstanceOf(MemoryLimitException::class, $thrown[6]);

        // What the library throws for bad input, caught as one, still the SPL class it was.
        $caught = [];
        foreach ([
            static fn () => new CmsUser('1', ['f' => new \stdClass()]),
            static fn () => UserEvent::of('exploded'),
            static fn () => new StreamLogger(null, 'loud'),
            static fn () => new TransportException('no-such-case'),
            static fn () => new Runtime(['no_such_option' => 1]),
            static fn () => serialize(Peers::runtime()),
        ] as $i => $bad) {
            try {
                $bad();
                $this->fail("case {$i} did not throw");
            } catch (ScimProvisionerException $e) {
                $caught[] = $e;
            }
        }
        $this->assertCount(6, $caught);
        $this->assertInstanceOf(\InvalidArgumentException::class, $caught[0]);
        $this->assertInstanceOf(\LogicException::class, $caught[5]);
    }

    public function testAPsr3LoggerGetsLinesWithSecretsRedacted(): void
    {
        $psr = new CollectingPsrLogger();
        $secret = 'tok-' . bin2hex(random_bytes(8));
        $logger = new RedactingLogger(PsrLoggerAdapter::wrap($psr), [$secret]);
        $logger->warning("sent Bearer {$secret} to {url}", [
            'url' => "https://x.example/?t={$secret}",
            'nested' => ['deeper' => ["Authorization: Bearer {$secret}"]],
            'exception' => new \RuntimeException("failed with {$secret}"),
            'stringable' => new class ($secret) implements \Stringable {
                public function __construct(private readonly string $s)
                {
                }

                public function __toString(): string
                {
                    return "holds {$this->s}";
                }
            },
            'object' => (object) ['token' => $secret],
            'count' => 3,
        ]);
        $this->assertCount(1, $psr->lines);
        $line = $psr->lines[0];
        $this->assertSame('warning', $line['level']);
        $this->assertSame('sent Bearer <redacted> to {url}', $line['message'], 'placeholders are left to the PSR-3 logger');
        $this->assertSame('https://x.example/?t=<redacted>', $line['context']['url']);
        $this->assertSame(['deeper' => ['Authorization: Bearer <redacted>']], $line['context']['nested']);
        $this->assertSame('RuntimeException: failed with <redacted>', $line['context']['exception']);
        $this->assertSame('holds <redacted>', $line['context']['stringable']);
        $this->assertSame('stdClass', $line['context']['object']);
        $this->assertSame(3, $line['context']['count']);
        $this->assertStringNotContainsString($secret, $psr->text());

        $this->assertInstanceOf(PsrLoggerAdapter::class, PsrLoggerAdapter::wrap($psr));
        $this->assertSame($psr, PsrLoggerAdapter::wrap($psr)->inner());
        $stream = new StreamLogger(fopen('php://memory', 'w+b'));
        $this->assertSame($stream, PsrLoggerAdapter::wrap($stream), "the library's own loggers pass as they are");
    }
}
