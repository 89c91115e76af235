<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

/**
 * @internal The response body cap for a Guzzle client: {@see guzzleSink()} is a writable
 * php://temp stream (Guzzle's FnStream) that refuses a write past `cap` bytes. Guzzle writes
 * the body into its `sink` from curl's write callback, and a short write makes curl abort
 * the transfer (error 23), so a body past the cap is never downloaded whole; `overflow` then
 * says why. Built from guzzlehttp/psr7's own classes, so the library declares no class
 * implementing a PSR interface (it loads, and preloads, without psr/http-message).
 */
final class BodyCap
{
    public int $written = 0;
    public bool $overflow = false;

    public function __construct(public readonly int $cap)
    {
    }

    /** @return \Psr\Http\Message\StreamInterface */
    public function guzzleSink(): object
    {
        $inner = \GuzzleHttp\Psr7\Utils::streamFor(\GuzzleHttp\Psr7\Utils::tryFopen('php://temp', 'w+b'));
        return \GuzzleHttp\Psr7\FnStream::decorate($inner, [
            'write' => function ($string) use ($inner): int {
                $string = (string) $string;
                if ($this->written + strlen($string) > $this->cap) {
                    $this->overflow = true;
                    return 0; // a short write: curl aborts the transfer
                }
                $n = $inner->write($string);
                $this->written += $n;
                return $n;
            },
        ]);
    }
}
