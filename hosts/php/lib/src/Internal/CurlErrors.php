<?php

declare(strict_types=1);

namespace ScimProvisioner\Internal;

/**
 * @internal The WIT `transport-error` case for a libcurl error number, shared by
 * CurlTransport and Psr18Transport (Guzzle reports curl's errno in its handler context).
 */
final class CurlErrors
{
    public static function caseOf(int $errno): string
    {
        return match (true) {
            $errno === 28 => 'timeout', // CURLE_OPERATION_TIMEDOUT
            in_array($errno, [1, 3], true) => 'invalid-url', // UNSUPPORTED_PROTOCOL, URL_MALFORMAT
            // COULDNT_RESOLVE_PROXY, COULDNT_RESOLVE_HOST, COULDNT_CONNECT, GOT_NOTHING, SEND_ERROR, RECV_ERROR
            in_array($errno, [5, 6, 7, 52, 55, 56], true) => 'cannot-connect',
            // SSL_CONNECT_ERROR, PEER_CERTIFICATE, SSL_ENGINE_*, SSL_CERTPROBLEM, SSL_CIPHER,
            // PEER_FAILED_VERIFICATION, USE_SSL_FAILED, SSL_CACERT_BADFILE, SSL_SHUTDOWN_FAILED,
            // SSL_CRL_BADFILE, SSL_ISSUER_ERROR, SSL_PINNEDPUBKEYNOTMATCH, SSL_INVALIDCERTSTATUS, SSL_CLIENTCERT
            in_array($errno, [35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98], true) => 'tls',
            default => 'other',
        };
    }
}
